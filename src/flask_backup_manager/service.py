"""The operations behind every route and command, in plain terms: they take ids and an explicit
actor, return rows and values, and raise :class:`ServiceError`. No HTTP here: ``api.py``,
``pages.py`` and ``cli.py`` turn these into answers."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO, NamedTuple, TypeVar

import sqlalchemy as sa
from redis.exceptions import RedisError

from .engine import (
    FORMATS,
    SUPPORTED,
    ColumnFacts,
    Profile,
    Recipient,
    facts_of,
    one_line,
    problems,
    scrub,
    unredacted,
)
from .lifecycle import add_log, audit, finish, remove_parts, update
from .models import ACTIVE, FINISHED, Status, db_now, utcnow
from .presenters import as_utc, audit_entry, log_entry, manifest_of, readers
from .queue import enqueue, job_exists, listening_workers, redis_connection
from .state import State, get_state, model_facts, redactions
from .storage import (
    PRESIGNED_SECONDS,
    LocalStorage,
    Stat,
    Storage,
    StorageError,
    is_backup_name,
)

R = TypeVar("R")


class ServiceError(Exception):
    """An operation refused: ``status`` is the HTTP status the views answer with, ``code``
    the machine-readable error code, ``message`` the sentence meant for a person, ``extra``
    machine-readable facts the API adds to its error object (``{"active": [7]}`` for a
    refusal of too many backups: the ids of those queued or running; ``{"detail": ...}``:
    the technical cause behind the sentence)."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.extra = extra or {}


def bad_request(code: str, message: str) -> ServiceError:
    return ServiceError(400, code, message)


def not_found(what: str = "backup") -> ServiceError:
    return ServiceError(404, "not_found", f"No such {what}.")


def conflict(code: str, message: str) -> ServiceError:
    return ServiceError(409, code, message)


#: A whole number as the routes, pages and commands accept it: ASCII digits only (no sign, no
#: space, no Unicode digit that ``int()`` would take), and few enough to fit a 64-bit integer.
WHOLE_NUMBER = re.compile(r"[0-9]{1,18}")


def whole_number(text: Any) -> int | None:
    """``text`` as an int when it is a whole number by :data:`WHOLE_NUMBER`, else None."""
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if isinstance(text, str) and WHOLE_NUMBER.fullmatch(text):
        return int(text)
    return None


def clip(value: Any, limit: int = 40) -> str:
    """A short, quoted echo of client input for an error message: at most ``limit``
    characters of it (``repr`` escapes every unprintable one), so a 10 kB value gives a
    one-line message; a value that is not text is named by its type only."""
    if not isinstance(value, str):
        return f"<{type(value).__name__}>"
    return repr(value[:limit]) + ("..." if len(value) > limit else "")


def formats(state: State | None = None) -> list[dict[str, str]]:
    """The formats the host's database can be exported to."""
    state = state or get_state()
    names = SUPPORTED.get(state.engine.url.get_backend_name(), ())
    return [
        {"name": n, "description": FORMATS[n].description, "extension": FORMATS[n].extension}
        for n in names
    ]


#: what to check when the job queue cannot be reached
REDIS_ADVICE = "check that Redis is running and that BACKUP_MANAGER_REDIS_URL points at it"


def worker_warning(state: State | None = None) -> str | None:
    """Why a queued backup would not start now, for the pages and the API: no worker listens
    on the queue, or the queue cannot be reached. ``None`` when a worker is listening."""
    state = state or get_state()
    try:
        if listening_workers(state):
            return None
    except (RedisError, OSError, RuntimeError) as e:  # RuntimeError: no Redis configured
        return (
            f"The job queue is unavailable, so no backup can start: {REDIS_ADVICE} ({one_line(e)})."
        )
    return (
        f"No worker is listening on queue {state.queue_name}: start one with "
        "`flask backups worker`."
    )


#: the PostgreSQL advisory lock that makes backup creations take turns (any fixed number)
CREATE_LOCK = 0x666D626372656174  # "fmbcreat"


def create_backup(
    format: Any, *, created_by: str | None, redaction: Any = None, encrypt: Any = None
) -> Any:
    """Insert a queued backup and enqueue its job. 400 for an unknown format or redaction
    profile (``redaction``: a profile's name; None or "" for a full copy), 403 for a full copy
    when BACKUP_MANAGER_REQUIRE_REDACTION is on, 503 when the queue cannot be reached (the row
    is then ``failed``, never left ``queued``). ``encrypt`` (:func:`chosen_recipients`): the
    file is encrypted for BACKUP_MANAGER_RECIPIENTS and its name ends in ``.age``."""
    state = get_state()
    names = [f["name"] for f in formats(state)]
    if format not in names:
        raise bad_request(
            "unknown_format", f"Unknown format {clip(format)}: choose one of {', '.join(names)}."
        )
    profile = chosen_profile(redaction, state)
    recipients = chosen_recipients(encrypt, state)
    db, Backup = state.db, state.models.Backup
    active = sa.select(Backup.id).where(Backup.status.in_(ACTIVE)).order_by(Backup.id)
    if db.session.get_bind(mapper=Backup).dialect.name == "postgresql":
        # one creation at a time (until its commit): with ids from a sequence, a creation with
        # a lower id may commit after another one has counted, and both would find room
        db.session.execute(
            sa.text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": CREATE_LOCK},
            bind_arguments={"mapper": Backup},
        )
    ahead = list(db.session.scalars(active))
    if len(ahead) >= state.max_active:
        db.session.rollback()  # and with it the lock
        raise too_many(ahead)
    now = db_now(db.session.connection())
    backup = Backup(
        format=format,
        status=Status.QUEUED,
        created_at=now,
        created_by=created_by,
        redaction=profile.name if profile else None,
        encrypted_for=recipients_json(recipients),
    )
    db.session.add(backup)
    db.session.flush()
    stamp = as_utc(backup.created_at).strftime("%Y%m%d-%H%M%S")
    age = ".age" if recipients else ""
    backup.filename = f"{state.app_name}-{stamp}-{backup.id}{FORMATS[format].extension}{age}"
    copy = f", redaction profile {profile.name}" if profile else ""
    if recipients:
        copy += f", encrypted for {readers(describe_recipients(recipients))}"
    add_log(backup.id, "info", f"queued: format {format}{copy}", commit=False)
    detail = f"{format}, redaction {profile.name}" if profile else format
    detail += ", encrypted" if recipients else ""
    audit("create", backup.id, detail, actor=created_by, commit=False)
    db.session.commit()
    # SQLite: two creations at once both saw room (its writes, ids and commits come one at a
    # time, in the same order): the one with the higher id steps back
    ahead = list(db.session.scalars(active.where(Backup.id < backup.id)))
    if len(ahead) >= state.max_active:
        finish(
            backup.id,
            (Status.QUEUED,),
            Status.CANCELLED,
            logs=[("warning", "cancelled: too many backups at once")],
            error="too many backups at once",
        )
        raise too_many(ahead)
    try:
        job_id = enqueue(backup.id)
    except (RedisError, OSError, RuntimeError) as e:  # RuntimeError: no Redis configured
        message = f"queue unavailable: {e}"
        finish(backup.id, (Status.QUEUED,), Status.FAILED, error=message)
        add_log(backup.id, "error", message)
        raise ServiceError(
            503,
            "queue_unavailable",
            f"The job queue (Redis) cannot be reached, so backup {backup.id} was not started: "
            f"{REDIS_ADVICE}.",
            extra={"detail": one_line(e)},
        ) from None
    update(backup.id, job_id=job_id)
    return db.session.get(Backup, backup.id)


def profiles_of(state: State) -> dict[str, Profile]:
    """The host's profiles (:func:`.state.redactions`): 500 ``bad_redaction_config``, naming
    the column, when a model imported after ``init_app`` declares a rule that cannot apply,
    so the API answers JSON, the page and the CLI say which column, and nothing is queued."""
    try:
        return redactions(state)
    except ValueError as e:
        raise ServiceError(500, "bad_redaction_config", one_line(e)) from None


def chosen_profile(redaction: Any, state: State | None = None) -> Profile | None:
    """The profile a client named (None: a full copy, asked for with None or ""): 400
    ``unknown_redaction`` for a name (or a value of another type) that is none of the host's,
    403 ``redaction_required`` for a full copy when BACKUP_MANAGER_REQUIRE_REDACTION is on."""
    state = state or get_state()
    profiles = profiles_of(state)
    if redaction is None or redaction == "":
        if state.require_redaction:
            raise ServiceError(
                403,
                "redaction_required",
                "A full copy is not allowed here: choose a redaction profile "
                f"({', '.join(profiles)}).",
            )
        return None
    if not isinstance(redaction, str) or redaction not in profiles:
        known = ", ".join(profiles) or "none is declared"
        full = "" if state.require_redaction else ", or none for a full copy"
        raise bad_request(
            "unknown_redaction",
            f"Unknown redaction profile {clip(redaction)}: choose one of {known}{full}.",
        )
    return profiles[redaction]


def chosen_recipients(encrypt: Any, state: State | None = None) -> tuple[Recipient, ...]:
    """The keys a new backup is encrypted for (none: not encrypted). ``encrypt``: True, False,
    or None for the default, encrypted whenever BACKUP_MANAGER_RECIPIENTS names a key. 400
    ``bad_encrypt`` for another value, 400 ``no_recipients`` for True without a key, 403
    ``encryption_required`` for False when BACKUP_MANAGER_REQUIRE_ENCRYPTION is on."""
    state = state or get_state()
    if encrypt is None:
        encrypt = bool(state.recipients)
    if not isinstance(encrypt, bool):
        raise bad_request("bad_encrypt", f"encrypt must be true or false, not {clip(encrypt)}.")
    if encrypt and not state.recipients:
        raise bad_request(
            "no_recipients",
            "This application has no public key to encrypt for (BACKUP_MANAGER_RECIPIENTS is "
            "empty): make the backup without encryption, or ask the vendor for its key.",
        )
    if not encrypt and state.require_encryption:
        raise ServiceError(
            403,
            "encryption_required",
            "An unencrypted copy is not allowed here (BACKUP_MANAGER_REQUIRE_ENCRYPTION): every "
            f"backup is encrypted for {readers(describe_recipients(state.recipients))}.",
        )
    return state.recipients if encrypt else ()


def describe_recipients(recipients: Sequence[Recipient]) -> list[dict[str, Any]]:
    """Who can read a file, as the row, the API and the manifest say it: label, fingerprint."""
    return [{"label": r.label, "fingerprint": r.fingerprint} for r in recipients]


def recipients_json(recipients: Sequence[Recipient]) -> str | None:
    """The ``encrypted_for`` column's value for ``recipients`` (None: not encrypted)."""
    return json.dumps(describe_recipients(recipients)) if recipients else None


@dataclass(frozen=True)
class RedactionChoice:
    """One way to make a copy, as the create page, ``GET /api/formats`` and the CLI offer it:
    ``value`` is what the form posts ("" for the full copy, else a profile's name),
    ``summary`` one line on what it does, ``unredacted`` the columns whose names look
    personal or secret that it leaves as they are (the guard: ``table.column``)."""

    value: str
    label: str
    summary: str
    unredacted: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "label": self.label,
            "summary": self.summary,
            "unredacted": list(self.unredacted),
        }


FULL_COPY_SUMMARY = "Every table and column as it is, with every personal datum in it."


def redaction_choices(state: State | None = None) -> list[RedactionChoice]:
    """The full copy (unless BACKUP_MANAGER_REQUIRE_REDACTION is on), then each profile, with
    what the guard finds it leaves: over the database's own tables (a column added by a
    migration no model knows yet is seen too) and the models'."""
    state = state or get_state()
    facts = database_facts(state, lock_wait=LOCK_WAIT_FOR_PAGE, guard_only=True)
    choices = []
    if not state.require_redaction:
        choices.append(
            RedactionChoice("", "Full copy", FULL_COPY_SUMMARY, tuple(unredacted(None, facts)))
        )
    for name, profile in profiles_of(state).items():
        choices.append(
            RedactionChoice(name, name, profile.summary(), tuple(unredacted(profile, facts)))
        )
    return choices


#: seconds the create page waits for a table another session holds locked (a migration's
#: ACCESS EXCLUSIVE lock blocks PostgreSQL's column reflection) before its guard falls back
#: to the models' columns: the page must open while a lock is held, and a backup then waits
#: for the lock itself, saying so
LOCK_WAIT_FOR_PAGE = 2


def database_facts(
    state: State | None = None, *, lock_wait: float | None = None, guard_only: bool = False
) -> dict[str, list[ColumnFacts]]:
    """The column facts of the database backed up, by table key, reflected from it (every
    schema of a PostgreSQL database but the system's), and of the models' tables it does not
    hold yet; the Backup Manager's own tables left out. With ``lock_wait`` (seconds), a
    PostgreSQL reflection kept waiting longer for a lock gives the models' facts alone. With
    ``guard_only``, the reflected tables' columns alone (names, types, generated), which is
    all the guard reads: no constraint or index is reflected, 12x faster on SQLite (a 3,000
    table schema: 1 s instead of 11, on every load of the create page)."""
    state = state or get_state()
    with state.engine.connect() as conn:
        if lock_wait is not None and conn.dialect.name == "sqlite":
            return _sqlite_facts(conn, state, lock_wait, guard_only)
        if lock_wait is None or conn.dialect.name != "postgresql":
            return _reflected_facts(conn, state, guard_only)
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {int(lock_wait * 1000)}")
        try:
            return _reflected_facts(conn, state, guard_only)
        except sa.exc.OperationalError as e:
            if getattr(e.orig, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            return model_facts(state)


def _sqlite_facts(
    conn: sa.Connection, state: State, lock_wait: float, guard_only: bool
) -> dict[str, list[ColumnFacts]]:
    """:func:`_reflected_facts` of a SQLite database waiting at most ``lock_wait`` seconds
    for a writer's exclusive lock (a commit in rollback-journal mode keeps every reader out),
    then the models' facts: the create page opened as a 500 after the driver's 5 s."""
    busy = conn.exec_driver_sql("PRAGMA busy_timeout").scalar()
    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(lock_wait * 1000)}")
    try:
        return _reflected_facts(conn, state, guard_only)
    except sa.exc.OperationalError as e:
        if "database is locked" not in str(e.orig):  # SQLITE_BUSY (Python 3.10 has no code)
            raise
        return model_facts(state)
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(busy)}")


def _reflected_facts(
    conn: sa.Connection, state: State, guard_only: bool = False
) -> dict[str, list[ColumnFacts]]:
    own = {m.__table__.name for m in state.models}
    reflected = sa.MetaData()
    inspector = sa.inspect(conn)
    if conn.dialect.name == "postgresql":
        schemas = [
            s
            for s in inspector.get_schema_names()
            if s != "information_schema" and not s.startswith("pg_")
        ]
    else:
        schemas = [None]
    for schema in schemas:
        names = [n for n in inspector.get_table_names(schema=schema) if n not in own]
        if not guard_only:
            reflected.reflect(bind=conn, schema=schema, only=names)
            continue
        for (_, name), columns in inspector.get_multi_columns(
            schema=schema, filter_names=names
        ).items():
            sa.Table(
                name,
                reflected,
                *(
                    sa.Column(c["name"], c["type"], *_computed(c), nullable=c["nullable"])
                    for c in columns
                ),
                schema=schema,
            )
    facts = facts_of(t for t in reflected.tables.values() if t.name not in own)
    for key, cols in model_facts(state).items():
        facts.setdefault(key, cols)
    return facts


def _computed(column: Any) -> list[sa.Computed]:
    """The ``Computed`` of a reflected generated column (none for another)."""
    computed = column.get("computed")
    return [sa.Computed(computed["sqltext"])] if computed else []


@dataclass(frozen=True)
class RedactionCheck:
    """A profile checked against the live database: why it cannot apply (``problems``, each
    naming its key) and the columns the guard finds it leaves (``unredacted``)."""

    name: str
    summary: str
    problems: tuple[str, ...]
    unredacted: tuple[str, ...]


def check_redactions(name: str | None = None) -> list[RedactionCheck]:
    """Each profile (or the one named: 400 ``unknown_redaction`` for another name) checked
    against the tables of the database as it is now: what ``flask backups redaction check``
    reports. A key naming a table no model describes is checked here, not at start-up."""
    state = get_state()
    profiles = profiles_of(state)
    if name is not None and name not in profiles:
        raise bad_request(
            "unknown_redaction",
            f"Unknown redaction profile {clip(name)}: the profiles are "
            f"{', '.join(profiles) or 'none'}.",
        )
    try:
        facts = database_facts(state)
    except sa.exc.OperationalError as e:  # the server down, refusing us: one line, no password
        raise ServiceError(
            503,
            "database_unavailable",
            "The database cannot be reached, so the profiles cannot be checked: "
            + scrub(one_line(e.orig or e), state.engine.url),
        ) from None
    return [
        RedactionCheck(n, p.summary(), tuple(problems(p, facts)), tuple(unredacted(p, facts)))
        for n, p in profiles.items()
        if name is None or n == name
    ]


def too_many(active: list[int]) -> ServiceError:
    """The refusal of a backup beyond ``BACKUP_MANAGER_MAX_ACTIVE``, naming the ones queued or
    running (``extra["active"]``, for a link to them); no config key: its reader may be a user
    who cannot change it."""
    if len(active) == 1:
        message = (
            f"Another backup is already queued or running (backup {active[0]}): "
            "try again when it has finished."
        )
    else:
        message = (
            f"{len(active)} backups are already queued or running (backups "
            f"{', '.join(map(str, active))}): try again when one of them has finished."
        )
    return ServiceError(429, "too_many_active", message, extra={"active": active})


def reap(state: State | None = None) -> list[int]:
    """Fail the running backups whose worker stopped beating (killed, machine gone) and remove
    their partial files. Any worker or web request may run it; each row moves once."""
    state = state or get_state()
    Backup = state.models.Backup
    cutoff = db_now(state.db.session.connection()) - timedelta(seconds=state.worker_lost_after)
    stale = state.db.session.execute(
        sa.select(Backup.id, Backup.filename).where(
            Backup.status == Status.RUNNING, Backup.heartbeat_at < cutoff
        )
    ).all()
    reaped = _reap_lost_jobs(state, cutoff)
    for backup_id, filename in stale:
        message = f"worker lost: no heartbeat for {state.worker_lost_after} s"
        failed = [("error", f"failed: {message}")]
        if finish(backup_id, (Status.RUNNING,), Status.FAILED, logs=failed, error=message):
            remove_parts(filename, state)
            reaped.append(backup_id)
    return reaped


def check_storage(state: State | None = None) -> None:
    """Whether a file can be stored where backups are kept, now (the worker's start and
    ``flask backups check-storage``): 503 ``storage_unavailable`` with the store's own words.
    Unfinished uploads older than any job can run are aborted on the way."""
    state = state or get_state()
    try:
        state.storage.check()
        abort_stale_uploads(state)
    except StorageError as e:
        raise ServiceError(
            503,
            "storage_unavailable",
            f"the storage cannot be used: {one_line(e)}",
        ) from None


def abort_stale_uploads(state: State) -> list[str]:
    """Abort this app's unfinished uploads that no job can still be making: begun longer ago
    than a job may run and its worker stay silent. StorageError when the store cannot say."""
    return state.storage.abort_stale_uploads(
        older_than=state.job_timeout + state.worker_lost_after, app_name=state.app_name
    )


def sweep_work_dir(state: State | None = None) -> list[str]:
    """Remove what jobs that no longer run left in an object store's work directory (the file
    a worker killed with its work horse was uploading, its temp files): this app's file names
    (:func:`.storage.is_backup_name`, and their ``.<name>.*`` temp files), of no queued or
    running backup, unchanged for two heartbeats (an export writes more often). The worker
    runs it when it starts and before each job, as the other hosts' cleanup reaches only their
    own disks. Removing a name another process still reads does not disturb it (the kernel
    keeps the file until it is closed)."""
    state = state or get_state()
    work = getattr(state.storage, "work_dir", None)
    if not isinstance(work, Path) or not work.is_dir():
        return []
    Backup = state.models.Backup
    active = set(
        state.db.session.scalars(sa.select(Backup.filename).where(Backup.status.in_(ACTIVE)))
    )
    state.db.session.commit()
    old = time.time() - 2 * state.heartbeat  # a file being written changes more often
    removed = []
    for path in work.iterdir():
        name = path.name.removeprefix(".")
        if not is_backup_name(name, state.app_name) or any(
            name == a or name.startswith(f"{a}.") for a in active if a
        ):
            continue
        try:
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_mtime < old:
                path.unlink()
                removed.append(path.name)
        except OSError:
            continue
    return removed


def _reap_lost_jobs(state: State, cutoff: datetime) -> list[int]:
    """Fail queued backups whose job is gone from the queue (Redis flushed or restarted, the web
    process killed before it enqueued): without this they would block new backups for ever.
    Only rows older than the worker-lost delay are checked; with Redis down, none is."""
    Backup = state.models.Backup
    waiting = state.db.session.execute(
        sa.select(Backup.id, Backup.job_id).where(
            Backup.status == Status.QUEUED, Backup.created_at < cutoff
        )
    ).all()
    if not waiting:
        return []
    try:
        conn = redis_connection(state)
        lost = [i for i, job_id in waiting if not job_id or not job_exists(job_id, conn)]
    except (RedisError, OSError, RuntimeError):
        return []
    for backup_id in lost:
        message = "queue lost the job: create the backup again"
        finish(
            backup_id,
            (Status.QUEUED,),
            Status.FAILED,
            logs=[("error", f"failed: {message}")],
            error=message,
        )
    return lost


def list_backups(page: int = 1, per_page: int | None = None) -> tuple[list[Any], int]:
    """One page of the backups, newest first, and how many there are."""
    state = get_state()
    reap(state)
    Backup = state.models.Backup
    return _page(state, sa.select(Backup).order_by(Backup.id.desc()), page, per_page)


def _page(state: State, query: Any, page: int, per_page: int | None) -> tuple[list[Any], int]:
    """The rows of one page of ``query`` (an ordered select of one model), and the count of
    all its rows; 400 unless page and per_page are positive, per_page capped at 100."""
    per_page = state.per_page if per_page is None else per_page
    if page < 1 or per_page < 1:
        raise bad_request("bad_page", "page and per_page must be positive whole numbers.")
    per_page = min(per_page, 100)
    total = state.db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    offset = (page - 1) * per_page
    if offset >= total:  # past the end: no query, so no OFFSET beyond what the database takes
        return [], total
    return list(state.db.session.scalars(query.offset(offset).limit(per_page))), total


#: The largest id the ``Integer`` id column holds everywhere (int4 on PostgreSQL): a bigger
#: one cannot exist, and would be an "out of range" error of the database, not a 404.
MAX_ID = 2**31 - 1


def parse_id(value: Any) -> int:
    """A client's id (a path segment, a command argument) as an int: 404 unless it is a whole
    number by :data:`WHOLE_NUMBER` that the id column can hold."""
    number = whole_number(value)
    if number is None or number > MAX_ID:
        raise not_found()
    return number


def get_backup(value: Any) -> Any:
    """The backup of a client's id (:func:`parse_id`): 404 when there is none."""
    state = get_state()
    number = parse_id(value)
    reap(state)
    backup = state.db.session.get(state.models.Backup, number)
    if backup is None:
        raise not_found()
    return backup


def manifest(backup: Any) -> dict[str, Any]:
    """The manifest of a backup's file (what it is: app and versions, source, tables and
    rows, redaction rules, the file's size and sha256, its verification): 404 ``no_manifest``
    until the file is made."""
    found = manifest_of(backup)
    if found is None:
        if backup.status == Status.SUCCEEDED:
            why = "its file was made by a version of the Backup Manager that kept none"
        else:
            why = f"it {STANDS[Status(backup.status)]}, and one is written with a finished file"
        raise ServiceError(404, "no_manifest", f"Backup {backup.id} has no manifest: {why}.")
    return found


def backup_logs(backup: Any) -> list[dict[str, Any]]:
    return [log_entry(line) for line in backup.logs]


def audit_trail(value: Any) -> list[dict[str, Any]]:
    """Who created, downloaded, cancelled and deleted one backup, oldest first; kept after the
    backup is deleted, so 404 only when there never was such a backup (no row, no entry)."""
    state = get_state()
    number = parse_id(value)
    BackupAudit = state.models.BackupAudit
    rows = state.db.session.scalars(
        sa.select(BackupAudit).where(BackupAudit.backup_id == number).order_by(BackupAudit.id)
    ).all()
    if not rows and state.db.session.get(state.models.Backup, number) is None:
        raise not_found()
    return [audit_entry(r) for r in rows]


def audit_log(page: int = 1, per_page: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of the audit entries of all backups, deleted ones too, newest first (each
    with its ``backup_id``), and how many there are."""
    state = get_state()
    BackupAudit = state.models.BackupAudit
    rows, total = _page(
        state, sa.select(BackupAudit).order_by(BackupAudit.id.desc()), page, per_page
    )
    return [{**audit_entry(r), "backup_id": r.backup_id} for r in rows], total


def existing_backups(ids: Any) -> set[int]:
    """Those of ``ids`` whose backup still exists (the Activity page links to them)."""
    state, ids = get_state(), set(ids)
    Backup = state.models.Backup
    return set(state.db.session.scalars(sa.select(Backup.id).where(Backup.id.in_(ids))))


def file_path(backup: Any, state: State | None = None) -> Path:
    """Where a backup's file lives in a local storage directory (a name the server made)."""
    state = state or get_state()
    assert isinstance(state.storage, LocalStorage), "not a local storage"
    return state.storage.path(backup.filename)


def stored_stat(backup: Any, state: State | None = None) -> Stat | None:
    """What the storage says of a backup's file (None: there is none); 503 when the storage
    cannot be reached."""
    state = state or get_state()
    try:
        return state.storage.stat(backup.filename)
    except StorageError as e:
        raise storage_unavailable(backup, e) from None


def storage_unavailable(backup: Any, e: StorageError) -> ServiceError:
    return ServiceError(
        503,
        "storage_unavailable",
        f"The storage of backup {backup.id}'s file cannot be reached: {one_line(e)}",
    )


def downloadable(backup: Any) -> Stat:
    """What the storage says of a backup's file, once there is one to hand out: 409 until the
    backup has succeeded, 410 when its file is gone from storage."""
    if backup.status != Status.SUCCEEDED:
        raise conflict("not_finished", f"{stands(backup)}: it has no file to download.")
    found = stored_stat(backup)
    if found is None:
        raise file_missing(backup)
    return found


def file_missing(backup: Any) -> ServiceError:
    return ServiceError(
        410, "file_missing", f"The file of backup {backup.id} is missing from storage."
    )


#: where a backup stands, as the refusals say it: "Backup 4 is still running: ..."
STANDS = {
    Status.QUEUED: "is still queued",
    Status.RUNNING: "is still running",
    Status.SUCCEEDED: "has succeeded",
    Status.FAILED: "has failed",
    Status.CANCELLED: "was cancelled",
}


def stands(backup: Any) -> str:
    return f"Backup {backup.id} {STANDS[Status(backup.status)]}"


class StoredFile(NamedTuple):
    """A backup's file, open and checked: its first ``size`` bytes hash to ``backup.sha256``;
    or, from an object store, the short-lived ``url`` the client fetches it from (``file``
    None: the store hands it out, and it checked each part of it when it was uploaded)."""

    backup: Any
    file: BinaryIO | None  # rewound to its start
    size: int
    mtime: float
    mimetype: str
    url: str | None = None


def download(
    backup: Any,
    deliver: Callable[[StoredFile], tuple[R, bool]],
    *,
    actor: str | None,
    detail: str | None = None,
    copy: Callable[[bytes], object] | None = None,
    audited: bool = True,
    direct: bool = True,
    expires: int = PRESIGNED_SECONDS,
) -> R:
    """The one way a backup's file leaves storage, for the API and the CLI alike.

    Refuse unless it can be had (:func:`downloadable`); open it and read it through in 1 MiB
    chunks (each also handed to ``copy``), and refuse (500) unless its size and sha256 are the
    row's, so a file changed or damaged in storage is never handed out, not even in part;
    then give the open file, rewound, to ``deliver``. ``deliver`` owns the file from then on
    (a streamed answer closes it once sent) and returns what it made and whether it handed
    the file's bytes out (a HEAD or a 304 hands out none): only then is the download audited
    (unless ``audited`` is False: a download through a link audits itself, see links.py).
    The open file is the one checked, so a file swapped in by a rename after the check is not
    the one delivered.

    From an object store (``direct``, unless ``BACKUP_MANAGER_S3_PROXY_DOWNLOADS``) nothing is
    read here: ``deliver`` gets a presigned URL of ``expires`` seconds (5 minutes) to redirect
    the client to, and the download is audited before the answer leaves."""
    found = downloadable(backup)
    state = get_state()
    mimetype = FORMATS[backup.format].mimetype
    url = None
    # a presigned URL only for the object the store took; otherwise (other bytes, or the
    # same bytes under a new ETag after a copy in place) the file is read and checked here
    if direct and not state.proxy_downloads and same_stored_file(found, backup):
        try:
            url = state.storage.download_url(
                backup.filename, filename=backup.filename, expires=expires
            )
        except StorageError as e:
            raise storage_unavailable(backup, e) from None
    if url is not None:
        answer, delivered = deliver(
            StoredFile(backup, None, backup.size, found.mtime, mimetype, url)
        )
        if delivered and audited:
            audit("download", backup.id, detail, actor=actor)
        return answer
    try:
        f = state.storage.open(backup.filename)
    except FileNotFoundError:  # gone since its stat
        raise file_missing(backup) from None
    except StorageError as e:
        raise storage_unavailable(backup, e) from None
    try:
        if not matches_row(f, backup, copy):
            raise changed_in_storage(backup)
        f.seek(0)
        answer, delivered = deliver(StoredFile(backup, f, backup.size, found.mtime, mimetype))
    except StorageError as e:
        f.close()
        raise storage_unavailable(backup, e) from None
    except BaseException:
        f.close()
        raise
    if delivered and audited:
        audit("download", backup.id, detail, actor=actor)
    return answer


def same_stored_file(found: Stat, backup: Any) -> bool:
    """Whether what an object store says of a backup's object, without reading it, is what it
    said when it took the file: the size, the sha256 metadata, and the version (ETag) it
    answered then; the metadata alone anyone with write access to the bucket could copy onto
    other bytes. False tells only that a read must decide (a copy in place keeps the bytes
    under a new ETag)."""
    return (
        backup.stored_version is not None
        and found.version == backup.stored_version
        and found.size == backup.size
        and found.sha256 in (None, backup.sha256)
    )


def changed_in_storage(backup: Any) -> ServiceError:
    return ServiceError(
        500,
        "checksum_mismatch",
        f"The file of backup {backup.id} no longer matches its sha256: it was changed "
        "or damaged in storage, so it is not sent.",
    )


def delete_backup(backup: Any, *, actor: str | None, reason: str | None = None) -> None:
    """Remove the row, its log and its file. 409 while a job may still write the file."""
    if backup.status not in FINISHED:
        raise conflict("not_finished", f"{stands(backup)}: cancel it before deleting it.")
    state = get_state()
    try:  # the file first: one that cannot go (read-only storage) keeps its backup
        state.storage.delete(backup.filename)
    except StorageError as e:
        raise ServiceError(
            500,
            "storage_error",
            f"The file of backup {backup.id} cannot be removed from storage "
            f"({one_line(e)}): the backup is kept.",
        ) from None
    audit("delete", backup.id, reason, actor=actor, commit=False)
    # explicit: SQLite ignores ON DELETE CASCADE unless the host turned foreign keys on
    for model in (state.models.BackupLog, state.models.BackupLink):  # its links die with it
        state.db.session.execute(sa.delete(model).where(model.backup_id == backup.id))
    state.db.session.delete(backup)
    state.db.session.commit()


def cancel_backup(backup: Any, *, actor: str | None) -> Any:
    """Ask a queued or running backup to stop; the worker removes its partial file."""
    if backup.status in FINISHED:
        done = "been cancelled" if backup.status == Status.CANCELLED else backup.status
        raise conflict("already_finished", f"Backup {backup.id} has already {done}.")
    if finish(backup.id, ACTIVE, Status.CANCELLED, error="cancelled"):
        add_log(backup.id, "warning", "cancelled", commit=False)
        audit("cancel", backup.id, actor=actor)
    state = get_state()
    state.db.session.refresh(backup)
    return backup


def prune(state: State | None = None, *, actor: str | None) -> list[int]:
    """Apply retention (``BACKUP_MANAGER_KEEP_LAST`` / ``KEEP_DAYS``) to finished backups:
    rows and files go when they are older than D days, or beyond the newest N succeeded ones
    (failed and cancelled ones go once N newer backups have finished)."""
    state = state or get_state()
    Backup = state.models.Backup
    finished = state.db.session.scalars(
        sa.select(Backup).where(Backup.status.in_(FINISHED)).order_by(Backup.id.desc())
    ).all()
    cutoff = utcnow() - timedelta(days=state.keep_days) if state.keep_days else None
    # KEEP_LAST counts good backups only: a newer failure never pushes out the last good copy;
    # failed and cancelled rows stay while they are among the newest N finished ones
    n = state.keep_last
    good = [b.id for b in finished if b.status == Status.SUCCEEDED][:n]
    recent_bad = [b.id for b in finished[:n] if b.status != Status.SUCCEEDED]
    doomed = [
        b
        for b in finished
        if (n is not None and b.id not in good and b.id not in recent_bad)
        or (cutoff is not None and as_utc(b.created_at) < cutoff)
    ]
    for backup in doomed:
        delete_backup(backup, actor=actor, reason="retention")
    return [b.id for b in doomed]


def matches_row(f: BinaryIO, backup: Any, copy: Callable[[bytes], object] | None = None) -> bool:
    """Read the open file ``f`` through in 1 MiB chunks (each also handed to ``copy``): whether
    its size and sha256 are the row's. The one full check of a stored file (downloads and the
    detail page)."""
    h, size = hashlib.sha256(), 0
    while chunk := f.read(1 << 20):
        h.update(chunk)
        size += len(chunk)
        if copy is not None:
            copy(chunk)
    return h.hexdigest() == backup.sha256 and size == backup.size


FILE_MISSING = "The file is missing from storage."
FILE_DAMAGED = "The file no longer matches its checksum."


def file_problem(backup: Any, *, full: bool = False) -> str | None:
    """What is wrong with a succeeded backup's file, in a sentence for the pages; ``None`` when
    nothing is (or the backup has no file yet). A stat finds a file gone or of another size (the
    list's check); ``full`` also checks it against its sha256 (the detail page's): an object
    store's version and sha256 of it, else a read of the file, once per version of it (the
    storage's :attr:`.Stat.version`), so a page seen again costs a stat, and a file changed in
    storage is read again."""
    if backup.status != Status.SUCCEEDED:
        return None
    state = get_state()
    try:
        found = state.storage.stat(backup.filename)
    except StorageError as e:
        return unreachable(e)
    return _problem(state, backup, found, full)


def file_problems(backups: Sequence[Any]) -> dict[int, str | None]:
    """:func:`file_problem` of each backup (the list's check), from one listing of the
    storage where it has one (an object store: a request per thousand files, not one each)."""
    state = get_state()
    done = [b for b in backups if b.status == Status.SUCCEEDED]
    try:
        found = state.storage.stat_many([b.filename for b in done]) if done else {}
    except StorageError as e:
        return {b.id: unreachable(e) for b in done}
    return {b.id: _problem(state, b, found.get(b.filename), False) for b in backups}


def unreachable(e: StorageError) -> str:
    return f"The storage cannot be reached: {one_line(e)}"


def _problem(state: State, backup: Any, found: Stat | None, full: bool) -> str | None:
    if backup.status != Status.SUCCEEDED:
        return None
    if found is None:
        return FILE_MISSING
    if found.size != backup.size or found.sha256 not in (None, backup.sha256):
        return FILE_DAMAGED
    if not full or same_stored_file(found, backup):
        return None
    if not _file_matches(state.storage, backup.filename, backup.sha256, backup.size, found.version):
        return FILE_DAMAGED
    return None


@functools.lru_cache(maxsize=256)
def _file_matches(storage: Storage, name: str, sha256: str, size: int, version: str) -> bool:
    """:func:`matches_row` of the stored file ``name``, cached by its version."""
    try:
        with storage.open(name) as f:
            return matches_row(f, SimpleNamespace(sha256=sha256, size=size))
    except (OSError, StorageError):
        return False
