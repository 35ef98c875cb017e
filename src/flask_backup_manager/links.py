"""Download links: a backup handed to someone without an account (a vendor's support desk)
through a URL with an unguessable token. Only the token's sha256 is stored, so the token is
shown once, when the link is made; a link lives until it expires (72 h unless told, at most
BACKUP_MANAGER_LINK_MAX_AGE hours), is revoked, or has been downloaded its maximum number of
times, and dies with its backup. No HTTP here: the views and the CLI translate.

What counts as a download: a request whose answer starts at the file's first byte (a whole
file, or a range from byte 0). A resumed download (a range from a later byte) is not counted,
so an interrupted download of a one-download link can be finished, but only by the client
that started it: one whose address and user agent made a counted download of this link (the
audit trail says so). Anyone else's range from a later byte counts as a download, and is
refused once the link is used up; otherwise whoever got hold of a used link could fetch all
of the file but its first byte (which every format's magic number gives away) for as long as
the link lives. A HEAD or a 304 sends nothing and counts nothing. Every use is in the audit
trail with the client's address and user agent.

Whatever makes a link unusable (unknown, expired, used up, revoked, its backup gone or not
downloadable), the answer is the same :class:`LinkGone`, decided before the file is opened
(reading and hashing it takes time a client can measure, and its Range, If-Match and
If-None-Match answers differ): no oracle for which."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import current_app

from . import service
from .lifecycle import audit
from .models import Status, db_now
from .presenters import as_utc, iso, plural
from .service import ServiceError, clip, whole_number
from .state import State, get_state
from .storage import PRESIGNED_SECONDS

R = TypeVar("R")

#: hours a link lives unless told (capped at BACKUP_MANAGER_LINK_MAX_AGE)
DEFAULT_HOURS = 72
#: a note's most characters ("ticket #4711")
NOTE_MAX = 200
#: the most downloads a link may allow
MAX_DOWNLOADS = 1_000_000
#: what ``secrets.token_urlsafe(32)`` makes: 43 characters, 256 bits
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
#: the one message of every unusable link
GONE_MESSAGE = (
    "This download link is not valid: it may have expired, been used up or revoked, or the "
    "address is incomplete. Ask whoever sent it for a new one."
)


class LinkState(str, Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    USED_UP = "used_up"
    REVOKED = "revoked"

    def __str__(self) -> str:
        return self.value


class LinkGone(ServiceError):
    """A link that cannot be used, whichever the reason: always the same 404."""

    def __init__(self) -> None:
        super().__init__(404, "link_not_found", GONE_MESSAGE)


def invalid(field: str, message: str) -> ServiceError:
    """400 naming the field of the request that is wrong (``extra``: ``{"field": ...}``)."""
    return ServiceError(400, "invalid_field", message, extra={"field": field})


def now(state: State | None = None) -> datetime:
    """Now, in UTC, by the state's clock (a test's), else the database's."""
    state = state or get_state()
    if state.clock is not None:
        return as_utc(state.clock())  # type: ignore[return-value]
    return db_now(state.db.session.connection())


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def state_of(link: Any, at: datetime) -> LinkState:
    if link.revoked_at is not None:
        return LinkState.REVOKED
    if as_utc(link.expires_at) <= at:
        return LinkState.EXPIRED
    if link.max_downloads is not None and link.downloads >= link.max_downloads:
        return LinkState.USED_UP
    return LinkState.ACTIVE


def link_entry(link: Any, at: datetime | None = None) -> dict[str, Any]:
    """A link as the API, the pages and the CLI show it: never its token (not kept)."""
    return {
        "id": link.id,
        "backup_id": link.backup_id,
        "note": link.note,
        "created_by": link.created_by,
        "created_at": iso(link.created_at),
        "expires_at": iso(link.expires_at),
        "max_downloads": link.max_downloads,
        "downloads": link.downloads,
        "revoked_at": iso(link.revoked_at),
        "state": str(state_of(link, at or now())),
    }


@dataclass(frozen=True)
class NewLink:
    """A link just made, with its token: the one moment the token is known."""

    link: Any
    token: str
    url: str


def hours_arg(value: Any, state: State) -> int:
    if value is None or value == "":
        return min(DEFAULT_HOURS, state.link_max_age)
    return _bounded(
        "expires_in_hours",
        value,
        state.link_max_age,
        f"a whole number of hours from 1 to {state.link_max_age} (BACKUP_MANAGER_LINK_MAX_AGE)",
    )


def max_downloads_arg(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return _bounded(
        "max_downloads",
        value,
        MAX_DOWNLOADS,
        f"a whole number from 1 to {MAX_DOWNLOADS:,}, or none for no limit",
    )


def _bounded(field: str, value: Any, most: int, what: str) -> int:
    """``value`` as a whole number from 1 to ``most``; else 400 naming ``field``."""
    number = whole_number(value)
    if number is None or not 1 <= number <= most:
        shown = clip(value) if isinstance(value, str) else repr(value)[:40]
        raise invalid(field, f"{field} must be {what}, not {shown}.")
    return number


def note_arg(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("note", f"note must be text, not {clip(value)}.")
    value = value.strip()
    if len(value) > NOTE_MAX or re.search(r"[\x00-\x1f\x7f\u2028\u2029]", value):
        raise invalid("note", f"note must be one line of at most {NOTE_MAX} characters.")
    return value or None


def create_link(
    backup: Any,
    *,
    created_by: str | None,
    expires_in_hours: Any = None,
    max_downloads: Any = None,
    note: Any = None,
    url_of: Callable[[str], str],
) -> NewLink:
    """A new link to a succeeded backup's file (409 before it has one, 410 when it is gone
    from storage; 400 ``invalid_field`` naming a bad field), audited; its address is
    ``url_of(token)``, which the notify hook is told (its failure is logged)."""
    state = get_state()
    hours = hours_arg(expires_in_hours, state)
    limit = max_downloads_arg(max_downloads)
    text = note_arg(note)
    service.downloadable(backup)
    token = secrets.token_urlsafe(32)
    at = now(state)
    link = state.models.BackupLink(
        backup_id=backup.id,
        token_hash=token_hash(token),
        note=text,
        created_by=created_by,
        created_at=at,
        expires_at=at + timedelta(hours=hours),
        max_downloads=limit,
        downloads=0,
    )
    state.db.session.add(link)
    state.db.session.flush()
    limit_text = f", at most {plural(limit, 'download')}" if limit else ""
    detail = f"link {link.id}: {hours} h{limit_text}" + (f", note {text}" if text else "")
    audit("link_create", backup.id, detail[:255], actor=created_by, commit=False)
    state.db.session.commit()
    made = NewLink(link, token, url_of(token))
    notify("created", link, backup, made.url)
    return made


def list_links(backup: Any) -> list[Any]:
    """A backup's links, newest first."""
    state = get_state()
    BackupLink = state.models.BackupLink
    query = sa.select(BackupLink).where(BackupLink.backup_id == backup.id)
    return list(state.db.session.scalars(query.order_by(BackupLink.id.desc())))


def get_link(backup: Any, value: Any) -> Any:
    """The link of a client's id among ``backup``'s links: 404 otherwise."""
    state = get_state()
    number = whole_number(value)
    link = None if number is None else state.db.session.get(state.models.BackupLink, number)
    if link is None or link.backup_id != backup.id:
        raise service.not_found("link")
    return link


def find_link(backup: Any, value: str) -> Any:
    """A link of ``backup`` by its id or its token (the CLI's ``--revoke``)."""
    if TOKEN.fullmatch(value):
        state = get_state()
        BackupLink = state.models.BackupLink
        link = state.db.session.scalar(
            sa.select(BackupLink).where(BackupLink.token_hash == token_hash(value))
        )
        if link is None or link.backup_id != backup.id:
            raise service.not_found("link")
        return link
    return get_link(backup, value)


def revoke_link(link: Any, *, actor: str | None) -> Any:
    """Revoke a link for good (again: nothing changes); audited once."""
    state = get_state()
    BackupLink = state.models.BackupLink
    moved = state.db.session.execute(
        sa.update(BackupLink)
        .where(BackupLink.id == link.id, BackupLink.revoked_at.is_(None))
        .values(revoked_at=now(state))
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved:
        audit("link_revoke", link.backup_id, f"link {link.id}", actor=actor, commit=False)
    state.db.session.commit()
    state.db.session.refresh(link)
    return link


def resolve(token: Any) -> tuple[Any, Any]:
    """The link of ``token`` and its backup, when it can be used now; else
    :class:`LinkGone`."""
    link, backup, _ = lookup(token, None)
    return link, backup


def lookup(token: Any, resumer: Client | None) -> tuple[Any, Any, bool]:
    """:func:`resolve`, and with a ``resumer`` (a download's client) also a used-up link when
    that client made one of its counted downloads, and whether it did (:func:`counted_for`).
    That question is asked of every well-formed token, known or not, live or dead, so a
    used-up link takes no longer to refuse than any other dead one."""
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise LinkGone()
    state = get_state()
    BackupLink = state.models.BackupLink
    link = state.db.session.scalar(
        sa.select(BackupLink).where(BackupLink.token_hash == token_hash(token))
    )
    resumable = resumer is not None and counted_for(link, resumer)
    if link is None:
        raise LinkGone()
    found = state_of(link, now(state))
    if found != LinkState.ACTIVE and not (found == LinkState.USED_UP and resumable):
        raise LinkGone()
    backup = state.db.session.get(state.models.Backup, link.backup_id)
    if backup is None or backup.status != Status.SUCCEEDED:
        raise LinkGone()
    try:
        service.downloadable(backup)
    except ServiceError:
        raise LinkGone() from None
    return link, backup, resumable


@dataclass(frozen=True)
class Client:
    """Who uses a link, as the audit trail keeps it."""

    ip: str | None
    user_agent: str | None

    def detail(self, link: Any, what: str = "") -> str:
        return f"link {link.id}{what}{self.tail()}"[:255]

    def tail(self) -> str:
        """Who, as every audit line of a link's use ends: its address and its agent, cut to
        120 characters, control characters (a terminal's escapes) shown as "?"."""
        agent = CONTROL.sub("?", (self.user_agent or "-")[:120])
        return f": ip {CONTROL.sub('?', self.ip or '-')}, agent {agent}"


#: what an audit line never holds of a client's text
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def counted_for(link: Any | None, client: Client) -> bool:
    """Whether ``client`` (same address, same agent) made a counted download of ``link``: the
    one client whose range from a later byte is a resume, not a download. The same query for
    no link (an unknown token): it finds nothing, in the time it takes to find something."""
    state = get_state()
    BackupAudit = state.models.BackupAudit
    tail = client.tail()
    link_id, backup_id = (0, -1) if link is None else (link.id, link.backup_id)
    details = state.db.session.scalars(
        sa.select(BackupAudit.detail).where(
            BackupAudit.backup_id == backup_id, BackupAudit.action == "link_download"
        )
    )
    whole, later = f"link {link_id}{tail}", f"link {link_id} from byte "
    return any(
        d == whole
        or (d.startswith(later) and d.endswith(tail) and d[len(later) : -len(tail)].isdigit())
        for d in details
        if d
    )


def open_link(token: Any, client: Client) -> tuple[Any, Any]:
    """The link page: the link and its backup (:func:`resolve`), the visit audited."""
    link, backup = resolve(token)
    audit("link_view", backup.id, client.detail(link), actor=None)
    return link, backup


def download_through(
    token: Any,
    send: Callable[[service.StoredFile], tuple[R, int | None]],
    client: Client,
) -> R:
    """A download through a link, by :func:`service.download` (the file checked against its
    sha256 first) and ``send``, which answers with the checked file and says from which byte
    its answer sends it (None: no bytes, a HEAD or a 304). From byte 0 it counts, atomically
    and only while the link has downloads left; from a later byte it is a resume when this
    client made a counted download of the link, else it counts too (see the module's
    docstring). A used-up link serves only those resumes, and refuses anyone else before the
    file is read. Audited with the client's address and agent; the first counted download
    tells the notify hook."""
    link, backup, resumable = lookup(token, client)  # before the file is read
    state = get_state()
    first_use = False

    def deliver(stored: service.StoredFile) -> tuple[R, bool]:
        nonlocal first_use
        answer, start = send(stored)
        counted = start == 0 or (start is not None and not resumable)
        try:
            if start is None:
                if state_of(link, now(state)) != LinkState.ACTIVE:
                    raise LinkGone()
                return answer, False
            if counted:
                first_use = count(link, state)
                action = "link_download"
            else:
                action = "link_resume"
        except BaseException:
            close = getattr(answer, "close", None)
            if close:
                close()
            raise
        where = f" from byte {start}" if start else ""
        audit(action, backup.id, client.detail(link, where), actor=None)
        return answer, True

    # a presigned URL (object storage) lives no longer than the link
    left = int((as_utc(link.expires_at) - now(state)).total_seconds())
    answer = service.download(
        backup, deliver, actor=None, audited=False, expires=max(1, min(PRESIGNED_SECONDS, left))
    )
    if first_use:
        notify("first_use", link, backup)
    return answer


def count(link: Any, state: State) -> bool:
    """Count one download of ``link`` when it still has one left (one UPDATE: two clients
    at once cannot both take a link's last download); :class:`LinkGone` when it has none.
    Whether it was the link's first."""
    BackupLink = state.models.BackupLink
    moved = state.db.session.execute(
        sa.update(BackupLink)
        .where(
            BackupLink.id == link.id,
            BackupLink.revoked_at.is_(None),
            BackupLink.expires_at > now(state),
            sa.or_(
                BackupLink.max_downloads.is_(None),
                BackupLink.downloads < BackupLink.max_downloads,
            ),
        )
        .values(downloads=BackupLink.downloads + 1)
        .execution_options(synchronize_session=False)
    ).rowcount
    state.db.session.commit()
    if not moved:
        raise LinkGone()
    state.db.session.refresh(link)
    return link.downloads == 1


def notify(event: str, link: Any, backup: Any, url: str | None = None) -> None:
    """Tell BACKUP_MANAGER_LINK_NOTIFY (when set) of ``event`` ("created", with the link's
    ``url``, or "first_use"); its failure is logged, never the caller's."""
    hook = get_state().link_notify
    if hook is None:
        return
    facts = {**link_entry(link), "backup_filename": backup.filename, "url": url}
    try:
        hook(event, facts)
    except Exception:
        current_app.logger.exception("BACKUP_MANAGER_LINK_NOTIFY failed on %s", event)
