"""Download links (issue 14, section 2): a backup handed to someone without an account through
an expiring, audited link. Real worker, real files, the real database; time travels through
the state's clock hook, never by sleeping."""

from __future__ import annotations

import gzip
import hashlib
import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from flask_backup_manager.links import GONE_MESSAGE

API = "/backups/api"
HTML = {"Accept": "text/html"}
SHARE = {"X-Test-Permissions": "view,create,download,delete,share"}
NO_SHARE = {"X-Test-Permissions": "view,create,download,delete"}
VISITOR = {"REMOTE_ADDR": "203.0.113.7", "HTTP_USER_AGENT": "VendorDesk/1.0 (ticket 4711)"}


class Clock:
    """The app's clock for links, moved by hand."""

    def __init__(self) -> None:
        self.at = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.at

    def travel(self, **delta: float) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(app) -> Clock:
    c = Clock()
    app.extensions["backup_manager"].clock = c
    return c


def made(client, run_worker, fmt: str = "sqlite3") -> dict:
    backup = client.post(f"{API}/backups", json={"format": fmt}).json
    run_worker()
    done = client.get(f"{API}/backups/{backup['id']}").json
    assert done["status"] == "succeeded", done
    return done


def stored(app, backup: dict) -> bytes:
    path = app.extensions["backup_manager"].storage_dir / backup["filename"]
    return path.read_bytes()


def new_link(client, backup_id: int, **body) -> dict:
    answer = client.post(f"{API}/backups/{backup_id}/links", json=body, headers=SHARE)
    assert answer.status_code == 201, answer.json
    return answer.json


def path_of(link: dict) -> str:
    return link["url"].removeprefix("http://localhost")


def fetch(client, link: dict, **headers):
    """A download through the link, its body read and the file closed."""
    answer = client.get(path_of(link) + "?download=1", headers=headers, environ_base=VISITOR)
    answer.get_data()
    answer.close()
    return answer


def links_of(client, backup_id: int) -> list[dict]:
    return client.get(f"{API}/backups/{backup_id}/links").json["links"]


def test_a_link_opens_its_page_and_downloads_the_file_until_it_expires(
    app, client, run_worker, clock
):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], expires_in_hours=2, note="ticket #4711")
    assert link["expires_at"] == "2030-01-01T14:00:00Z" and link["state"] == "active"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", link["token"])  # 256 bits
    assert link["url"] == f"http://localhost/backups/l/{link['token']}"

    page = client.get(path_of(link), headers=HTML)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    for fact in (backup["filename"], backup["sha256"], "sqlite3", "2030-01-01 14:00:00 UTC"):
        assert fact in text
    assert "6 tables" in text  # the manifest's summary
    assert f"gunzip -c {backup['filename']} | sqlite3 -safe new.db" in text

    clock.travel(hours=2, seconds=-1)
    got = fetch(client, link)
    assert got.status_code == 200 and got.data == stored(app, backup)
    assert hashlib.sha256(got.data).hexdigest() == backup["sha256"]
    assert got.headers["Content-Disposition"] == f"attachment; filename={backup['filename']}"

    clock.travel(seconds=1)  # the expiry itself
    assert fetch(client, link).status_code == 404
    assert client.get(path_of(link)).status_code == 404
    assert links_of(client, backup["id"])[0]["state"] == "expired"


def test_a_link_allows_its_downloads_and_a_resumed_one_does_not_count(app, client, run_worker):
    backup = made(client, run_worker)
    data = stored(app, backup)
    link = new_link(client, backup["id"], max_downloads=1)

    head = fetch(client, link, Range="bytes=0-99")  # the download starts: it counts
    assert head.status_code == 206 and head.data == data[:100]
    assert links_of(client, backup["id"])[0]["downloads"] == 1
    tail = fetch(client, link, Range="bytes=100-")  # interrupted, resumed (curl -C -)
    assert (
        tail.status_code == 206
        and tail.headers["Content-Range"] == f"bytes 100-{len(data) - 1}/{len(data)}"
    )
    assert hashlib.sha256(head.data + tail.data).hexdigest() == backup["sha256"]
    assert links_of(client, backup["id"])[0] == {
        **links_of(client, backup["id"])[0],
        "downloads": 1,
        "state": "used_up",
    }

    assert fetch(client, link).status_code == 404  # a second download
    assert fetch(client, link, Range="bytes=0-").status_code == 404
    assert client.get(path_of(link)).status_code == 404  # the page too
    head = client.head(path_of(link) + "?download=1")
    head.close()
    assert head.status_code == 404


def test_a_range_from_a_later_byte_of_a_fresh_link_counts_as_its_download(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], max_downloads=1)
    assert fetch(client, link, Range="bytes=10-").status_code == 206
    assert links_of(client, backup["id"])[0]["downloads"] == 1
    assert fetch(client, link, Range="bytes=0-9").status_code == 404  # no second start


def test_a_link_without_a_limit_counts_each_download_and_head_counts_none(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    for _ in range(3):
        assert fetch(client, link).status_code == 200
    head = client.head(path_of(link) + "?download=1")
    head.close()
    assert head.status_code == 200 and head.headers["X-Backup-SHA256"] == backup["sha256"]
    assert links_of(client, backup["id"])[0]["downloads"] == 3


def test_a_revoked_link_answers_404_and_a_resume_too(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], max_downloads=1)
    assert fetch(client, link, Range="bytes=0-9").status_code == 206
    revoked = client.post(f"{API}/backups/{backup['id']}/links/{link['id']}/revoke", headers=SHARE)
    assert revoked.status_code == 200 and revoked.json["state"] == "revoked"
    assert revoked.json["revoked_at"] and "token" not in revoked.json
    assert fetch(client, link, Range="bytes=10-").status_code == 404
    assert client.get(path_of(link)).status_code == 404
    again = client.post(f"{API}/backups/{backup['id']}/links/{link['id']}/revoke", headers=SHARE)
    assert again.status_code == 200 and again.json["revoked_at"] == revoked.json["revoked_at"]


def test_every_dead_link_answers_the_same_404(app, client, run_worker, clock):
    """Unknown, malformed, expired, used up, revoked, its backup deleted: one body."""
    first, second = made(client, run_worker), made(client, run_worker)
    expired = new_link(client, first["id"], expires_in_hours=1)
    used = new_link(client, first["id"], max_downloads=1)
    revoked = new_link(client, first["id"])
    orphan = new_link(client, second["id"])
    alive = new_link(client, first["id"], expires_in_hours=5)
    assert fetch(client, used).status_code == 200
    client.post(f"{API}/backups/{first['id']}/links/{revoked['id']}/revoke", headers=SHARE)
    assert client.delete(f"{API}/backups/{second['id']}").status_code == 204
    clock.travel(hours=1)
    unknown = {"url": "http://localhost/backups/l/" + "A" * 43}
    malformed = {"url": "http://localhost/backups/l/" + alive["token"][:-1]}

    bodies = set()
    for dead in (unknown, malformed, expired, used, revoked, orphan):
        for answer in (
            client.get(path_of(dead)),
            client.get(path_of(dead), headers=HTML),
            fetch(client, dead),
            client.get(path_of(dead) + "?download=1", headers={"Accept": "application/json"}),
        ):
            answer.close()
            assert answer.status_code == 404
            assert answer.headers["Referrer-Policy"] == "no-referrer"
            assert answer.headers["Cache-Control"] == "no-store"
            assert "Set-Cookie" not in answer.headers
            bodies.add(answer.data)
    assert len(bodies) == 1
    assert GONE_MESSAGE.encode() in bodies.pop()
    assert fetch(client, alive).status_code == 200  # the clock did not kill every link


STRANGER = {"REMOTE_ADDR": "198.51.100.66", "HTTP_USER_AGENT": "curl/8.5.0"}


def gone_body(client) -> bytes:
    return client.get("/backups/l/" + "A" * 43 + "?download=1").data


def test_a_used_link_gives_whoever_else_holds_it_nothing_not_even_a_resume(app, client, run_worker):
    """The link leaked from the ticket after the vendor's download: a range from byte 1 (the
    first byte is the format's magic number) would be the whole file, again and again."""
    backup = made(client, run_worker)
    data = stored(app, backup)
    link = new_link(client, backup["id"], max_downloads=1)
    assert fetch(client, link).data == data  # the vendor's one download
    url = path_of(link) + "?download=1"
    for headers in (
        {"Range": "bytes=1-"},
        {"Range": f"bytes={len(data) - 1}-"},
        {"Range": "bytes=999999999-"},  # was 416: a used link, not a dead one
        {"Range": "bytes=1-", "If-Match": '"nope"'},  # was 412
        {"Range": "bytes=0-0,1-"},
    ):
        answer = client.get(url, headers=headers, environ_base=STRANGER)
        answer.close()
        assert (answer.status_code, answer.data) == (404, gone_body(client)), headers
    assert client.head(url, headers={"Range": "bytes=1-"}, environ_base=STRANGER).status_code == 404
    assert links_of(client, backup["id"])[0]["downloads"] == 1
    tail = fetch(client, link, Range="bytes=1-")  # the vendor's own resume still works
    assert tail.status_code == 206 and tail.data == data[1:]


def test_a_range_from_a_later_byte_counts_unless_the_client_started_the_download(
    app, client, run_worker
):
    backup = made(client, run_worker)
    data = stored(app, backup)
    link = new_link(client, backup["id"], max_downloads=2)
    assert fetch(client, link, Range="bytes=0-9").data == data[:10]
    url = path_of(link) + "?download=1"
    other = client.get(url, headers={"Range": "bytes=10-"}, environ_base=STRANGER)
    assert other.status_code == 206 and other.data == data[10:]
    other.close()
    assert links_of(client, backup["id"])[0]["downloads"] == 2  # a download, not a resume
    third = {**STRANGER, "REMOTE_ADDR": "198.51.100.67"}
    late = client.get(url, headers={"Range": "bytes=10-"}, environ_base=third)
    late.close()
    assert late.status_code == 404
    again = client.get(url, headers={"Range": "bytes=10-"}, environ_base=STRANGER)
    assert again.status_code == 206 and again.data == data[10:]  # its own resume
    again.close()
    assert links_of(client, backup["id"])[0]["downloads"] == 2


def test_a_used_up_link_is_refused_before_its_file_is_read(app, client, run_worker):
    """Reading and hashing the file before saying 404 is time a client can measure (and its
    conditional answers differ): a damaged file shows whether it was read (500
    checksum_mismatch). Only the client that downloaded it may learn more of a used link."""
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], max_downloads=1)
    assert fetch(client, link).status_code == 200
    path = app.extensions["backup_manager"].storage_dir / backup["filename"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    url = path_of(link) + "?download=1"
    etag = f'"{backup["sha256"]}"'
    for answer in (
        client.get(url, environ_base=STRANGER),
        client.get(url, headers={"If-None-Match": etag}, environ_base=STRANGER),
        client.get(url, headers={"Range": "bytes=0-0"}, environ_base=STRANGER),
        client.get(url, headers={"Range": "bytes=1-"}, environ_base=STRANGER),
        client.head(url, environ_base=STRANGER),
    ):
        answer.close()
        assert answer.status_code == 404
    assert client.get(url, environ_base=STRANGER).data == gone_body(client)


def test_every_dead_link_costs_the_same_queries_to_refuse(app, client, run_worker, clock):
    """No timing oracle from a different code path: a used-up link (it was one more query,
    and before that the file read through) is refused with the statements an unknown token
    costs. Counted on the real engine, not timed."""
    backup = made(client, run_worker)
    used = new_link(client, backup["id"], max_downloads=1)
    assert fetch(client, used).status_code == 200
    revoked = new_link(client, backup["id"])
    client.post(f"{API}/backups/{backup['id']}/links/{revoked['id']}/revoke", headers=SHARE)
    expired = new_link(client, backup["id"], expires_in_hours=1)
    clock.travel(hours=1)
    unknown = {"url": "http://localhost/backups/l/" + "A" * 43}
    with app.app_context():
        engine = app.extensions["sqlalchemy"].engine
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement.split()[0])

    sa.event.listen(engine, "before_cursor_execute", seen)
    try:
        costs = {}
        for name, dead in (("unknown", unknown), ("revoked", revoked), ("expired", expired)):
            for headers in ({}, {"Range": "bytes=1-"}):
                statements.clear()
                answer = client.get(
                    path_of(dead) + "?download=1", headers=headers, environ_base=STRANGER
                )
                assert answer.status_code == 404
                costs[name, bool(headers)] = list(statements)
        for headers in ({}, {"Range": "bytes=1-"}):
            statements.clear()
            answer = client.get(
                path_of(used) + "?download=1", headers=headers, environ_base=STRANGER
            )
            assert answer.status_code == 404
            costs["used", bool(headers)] = list(statements)
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
    assert len({tuple(c) for c in costs.values()}) == 1, costs


def test_the_audit_trail_keeps_no_control_character_of_a_client(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    agent = "evil\x1b]0;owned\x07\x1b[2J\u2028next" + "A" * 5000
    client.get(path_of(link), environ_base={"HTTP_USER_AGENT": agent})
    trail = client.get(f"{API}/backups/{backup['id']}/audit").json["audit"]
    detail = next(a["detail"] for a in trail if a["action"] == "link_view")
    assert detail.startswith(f"link {link['id']}: ip 127.0.0.1, agent evil?]0;owned??[2J?next")
    assert len(detail) <= 255 and not re.search(r"[\x00-\x1f\x7f-\x9f\u2028]", detail)


def test_a_link_never_opens_another_backup(app, client, run_worker):
    mine, other = made(client, run_worker), made(client, run_worker, "sqlite3_db")
    link = new_link(client, mine["id"])
    assert fetch(client, link).data == stored(app, mine)
    assert hashlib.sha256(fetch(client, link).data).hexdigest() != other["sha256"]
    # its id under another backup: unknown there, and left as it is
    path = f"{API}/backups/{other['id']}/links/{link['id']}/revoke"
    wrong = client.post(path, headers=SHARE)
    assert wrong.status_code == 404 and wrong.json["error"]["code"] == "not_found"
    assert links_of(client, other["id"]) == []
    assert links_of(client, mine["id"])[0]["state"] == "active"
    # nor does the link page take a backup id
    assert client.get(f"/backups/l/{other['id']}").status_code == 404


def test_the_link_page_and_its_download_keep_the_token_to_themselves(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    for answer in (client.get(path_of(link), headers=HTML), fetch(client, link)):
        assert answer.status_code == 200
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in answer.headers  # no session for a visitor
    html = client.get(path_of(link), headers=HTML).get_data(as_text=True)
    # nothing loaded from elsewhere: every src and href is a path of this site
    refs = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert refs and all(r.startswith("/") and not r.startswith("//") for r in refs), refs
    assert "<script" not in html and "<img" not in html and "<iframe" not in html
    assert '<meta name="referrer" content="no-referrer">' in html
    assert "csrf" not in html


def test_a_mangled_link_address_is_our_404_not_the_hosts(app, client, run_worker):
    """A link pasted with a trailing slash or a path after it still holds the live token: the
    host's own 404 page (its analytics, its fonts from a CDN) would send it to them in the
    Referer. Every path under /l/ is the link page's dead-link answer."""
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    for tail in ("/", "/x", "//", "/download"):
        answer = client.get(path_of(link) + tail, headers=HTML)
        assert (answer.status_code, answer.data) == (404, gone_body(client)), tail
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"] == "no-store"
    assert fetch(client, link).status_code == 200  # the link itself still works


def test_the_token_is_given_once_and_only_its_hash_is_kept(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    listed = links_of(client, backup["id"])
    assert "token" not in listed[0] and "url" not in listed[0]
    assert link["token"] not in client.get(f"/backups/{backup['id']}", headers=HTML).get_data(
        as_text=True
    )
    from ..hostapp import db

    with app.app_context():
        rows = db.session.execute(sa.text("SELECT * FROM backup_manager_links")).mappings().all()
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(link["token"].encode()).hexdigest()
    assert not any(link["token"] in str(v) for v in rows[0].values())


def test_links_die_with_their_backup(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    new_link(client, backup["id"])
    assert client.delete(f"{API}/backups/{backup['id']}").status_code == 204
    from ..hostapp import db

    with app.app_context():
        left = db.session.scalar(sa.text("SELECT count(*) FROM backup_manager_links"))
    assert left == 0
    assert fetch(client, link).status_code == 404


def test_making_or_revoking_a_link_needs_share(app, client, run_worker):
    backup = made(client, run_worker)
    refused = client.post(f"{API}/backups/{backup['id']}/links", json={}, headers=NO_SHARE)
    assert refused.status_code == 403
    assert refused.json["error"] == {
        "code": "forbidden",
        "message": "You are not allowed to share backups.",
        "permission": "share",
    }
    link = new_link(client, backup["id"])
    path = f"{API}/backups/{backup['id']}/links/{link['id']}/revoke"
    assert client.post(path, headers=NO_SHARE).status_code == 403
    form = client.post(f"/backups/{backup['id']}/links", data={}, headers={**HTML, **NO_SHARE})
    assert form.status_code == 403
    assert links_of(client, backup["id"])[0]["state"] == "active"
    page = client.get(f"/backups/{backup['id']}", headers={**HTML, **NO_SHARE}).get_data(
        as_text=True
    )
    assert 'data-testid="link-form"' not in page and 'data-testid="revoke-link"' not in page
    assert 'data-testid="link-row"' in page  # the links are listed to whoever may view


def test_a_link_from_a_cookie_session_needs_the_csrf_token(app, client, run_worker):
    backup = made(client, run_worker)
    client.set_cookie("session", "anything")
    refused = client.post(f"{API}/backups/{backup['id']}/links", json={}, headers=SHARE)
    assert refused.status_code == 400 and refused.json["error"]["code"] == "csrf_failed"
    form = client.post(f"/backups/{backup['id']}/links", data={}, headers={**HTML, **SHARE})
    assert form.status_code == 400
    assert links_of(client, backup["id"]) == []


def test_the_detail_page_makes_a_link_and_shows_it_once(app, client, run_worker):
    backup = made(client, run_worker)
    page = client.get(f"/backups/{backup['id']}", headers={**HTML, **SHARE}).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = client.post(
        f"/backups/{backup['id']}/links",
        data={"csrf_token": token, "expires_in_hours": "5", "max_downloads": "2", "note": "#4711"},
        headers={**HTML, **SHARE},
    )
    assert answer.status_code == 201
    shown = answer.get_data(as_text=True)
    found = re.search(r'value="(http://localhost/backups/l/[A-Za-z0-9_-]{43})"', shown)
    assert found
    assert "shown only this once" in shown and 'data-testid="copy-link"' in shown
    assert client.get(found.group(1).removeprefix("http://localhost")).status_code == 200
    (listed,) = links_of(client, backup["id"])
    assert (listed["note"], listed["max_downloads"], listed["created_by"]) == ("#4711", 2, "tester")
    again = client.get(f"/backups/{backup['id']}", headers={**HTML, **SHARE}).get_data(as_text=True)
    assert found.group(1) not in again  # once
    assert "#4711" in again and "0 of 2" in again

    bad = client.post(
        f"/backups/{backup['id']}/links",
        data={"csrf_token": token, "expires_in_hours": "100000"},
        headers={**HTML, **SHARE},
    )
    assert bad.status_code == 303  # refused, said on the page it came from
    revoke = client.post(
        f"/backups/{backup['id']}/links/{listed['id']}/revoke",
        data={"csrf_token": token},
        headers={**HTML, **SHARE},
    )
    assert revoke.status_code == 303
    assert links_of(client, backup["id"])[0]["state"] == "revoked"


def test_every_use_is_audited_with_address_and_agent(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], note="ticket #4711")
    client.get(path_of(link), environ_base=VISITOR)
    fetch(client, link, Range="bytes=0-9")
    fetch(client, link, Range="bytes=10-")
    client.post(f"{API}/backups/{backup['id']}/links/{link['id']}/revoke", headers=SHARE)
    trail = client.get(f"{API}/backups/{backup['id']}/audit").json["audit"]
    used = [(a["action"], a["actor"], a["detail"]) for a in trail if a["action"].startswith("link")]
    visitor = "ip 203.0.113.7, agent VendorDesk/1.0 (ticket 4711)"
    assert used == [
        ("link_create", "tester", f"link {link['id']}: 72 h, note ticket #4711"),
        ("link_view", None, f"link {link['id']}: {visitor}"),
        ("link_download", None, f"link {link['id']}: {visitor}"),
        ("link_resume", None, f"link {link['id']} from byte 10: {visitor}"),
        ("link_revoke", "tester", f"link {link['id']}"),
    ]
    assert all(a["at"].endswith("Z") for a in trail)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"expires_in_hours": 0}, "expires_in_hours"),
        ({"expires_in_hours": 721}, "expires_in_hours"),
        ({"expires_in_hours": "soon"}, "expires_in_hours"),
        ({"expires_in_hours": 1.5}, "expires_in_hours"),
        ({"expires_in_hours": True}, "expires_in_hours"),
        ({"max_downloads": 0}, "max_downloads"),
        ({"max_downloads": -1}, "max_downloads"),
        ({"max_downloads": [1]}, "max_downloads"),
        ({"note": "x" * 201}, "note"),
        ({"note": "two\nlines"}, "note"),
        ({"note": 5}, "note"),
        ({"expires": 3}, "expires"),
    ],
)
def test_bad_link_input_is_400_naming_the_field(app, client, run_worker, body, field):
    backup = made(client, run_worker)
    answer = client.post(f"{API}/backups/{backup['id']}/links", json=body, headers=SHARE)
    assert answer.status_code == 400
    error = answer.json["error"]
    assert error["code"] == "invalid_field" and error["field"] == field
    assert field in error["message"] and len(error["message"]) < 300
    assert links_of(client, backup["id"]) == []


def test_no_link_to_a_backup_without_a_file(client):
    queued = client.post(f"{API}/backups", json={"format": "sqlite3"}).json
    answer = client.post(f"{API}/backups/{queued['id']}/links", json={}, headers=SHARE)
    assert answer.status_code == 409 and answer.json["error"]["code"] == "not_finished"
    assert client.post(f"{API}/backups/999/links", json={}, headers=SHARE).status_code == 404


def test_a_link_to_a_file_gone_from_storage_is_a_dead_link(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    (app.extensions["backup_manager"].storage_dir / backup["filename"]).unlink()
    assert fetch(client, link).status_code == 404
    assert client.get(path_of(link)).get_data(as_text=True).count(GONE_MESSAGE[:30]) == 1


@pytest.mark.parametrize("value", [0, -1, "30 days", 1.5, True])
def test_a_bad_link_max_age_stops_the_app_naming_it(make_app, value):
    with pytest.raises(ValueError, match="BACKUP_MANAGER_LINK_MAX_AGE"):
        make_app(BACKUP_MANAGER_LINK_MAX_AGE=value)


def test_the_link_max_age_caps_the_expiry_and_the_default(make_app, run_worker):
    app = make_app(BACKUP_MANAGER_LINK_MAX_AGE=24)
    client = app.test_client()
    backup = made(client, run_worker)
    assert (
        client.post(
            f"{API}/backups/{backup['id']}/links", json={"expires_in_hours": 25}, headers=SHARE
        )
        .json["error"]["message"]
        .startswith("expires_in_hours must be a whole number of hours from 1 to 24")
    )
    link = new_link(client, backup["id"])
    made_at = datetime.fromisoformat(link["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert expires - made_at == timedelta(hours=24)  # not the 72 h default


NOTIFIED: list = []


def record(event: str, facts: dict) -> None:
    NOTIFIED.append((event, facts))


def explode(event: str, facts: dict) -> None:
    raise RuntimeError("the mail server is down")


def test_notify_is_told_of_a_new_link_and_its_first_use(make_app, run_worker):
    NOTIFIED.clear()
    app = make_app(BACKUP_MANAGER_LINK_NOTIFY="tests.web.test_links:record")
    client = app.test_client()
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], note="ticket #4711")
    fetch(client, link)
    fetch(client, link)
    assert [(e, f["id"]) for e, f in NOTIFIED] == [
        ("created", link["id"]),
        ("first_use", link["id"]),
    ]
    assert NOTIFIED[0][1]["url"] == link["url"] and NOTIFIED[0][1]["note"] == "ticket #4711"
    assert "token" not in NOTIFIED[1][1]


def test_a_failing_notify_is_logged_and_breaks_no_download(make_app, run_worker, caplog):
    app = make_app(BACKUP_MANAGER_LINK_NOTIFY="tests.web.test_links:explode")
    client = app.test_client()
    backup = made(client, run_worker)
    link = new_link(client, backup["id"])
    got = fetch(client, link)
    assert got.status_code == 200 and hashlib.sha256(got.data).hexdigest() == backup["sha256"]
    failures = [r for r in caplog.records if "BACKUP_MANAGER_LINK_NOTIFY failed" in r.getMessage()]
    assert [r.getMessage() for r in failures] == [
        "BACKUP_MANAGER_LINK_NOTIFY failed on created",
        "BACKUP_MANAGER_LINK_NOTIFY failed on first_use",
    ]


def test_a_notify_that_cannot_be_imported_stops_the_app(make_app):
    with pytest.raises(ValueError, match="BACKUP_MANAGER_LINK_NOTIFY: cannot import"):
        make_app(BACKUP_MANAGER_LINK_NOTIFY="tests.web.nowhere:notify")


# -- the CLI ---------------------------------------------------------------------------------


def test_the_cli_makes_lists_and_revokes_links(app, client, run_worker):
    backup = made(client, run_worker)
    runner = app.test_cli_runner()
    out = runner.invoke(
        args=[
            "backups",
            "link",
            str(backup["id"]),
            "--expires",
            "2d",
            "--max-downloads",
            "3",
            "--note",
            "ticket #4711",
            "--base-url",
            "https://shop.example.com/",
        ],
    )
    assert out.exit_code == 0, out.output
    url = out.stdout.strip()
    assert re.fullmatch(r"https://shop\.example\.com/backups/l/[A-Za-z0-9_-]{43}", url)
    assert "Shown only now" in out.stderr
    (listed,) = links_of(client, backup["id"])
    made_at = datetime.fromisoformat(listed["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(listed["expires_at"].replace("Z", "+00:00"))
    assert expires - made_at == timedelta(hours=48)
    assert listed["created_by"].startswith("cli:") and listed["max_downloads"] == 3
    local = url.removeprefix("https://shop.example.com")
    assert fetch(client, {"url": "http://localhost" + local}).status_code == 200

    listing = runner.invoke(args=["backups", "link", str(backup["id"]), "--list"])
    assert listing.exit_code == 0
    assert (
        "active" in listing.output and "1/3" in listing.output and "ticket #4711" in listing.output
    )
    assert url.rsplit("/", 1)[1] not in listing.output

    by_token = runner.invoke(
        args=["backups", "link", str(backup["id"]), "--revoke", url.rsplit("/", 1)[1]]
    )
    assert by_token.exit_code == 0 and f"Link {listed['id']} of backup" in by_token.output
    assert fetch(client, {"url": "http://localhost" + local}).status_code == 404

    second = runner.invoke(args=["backups", "link", str(backup["id"]), "--base-url", "http://h"])
    link_id = links_of(client, backup["id"])[0]["id"]
    assert second.exit_code == 0
    by_id = runner.invoke(args=["backups", "link", str(backup["id"]), "--revoke", str(link_id)])
    assert by_id.exit_code == 0
    assert [x["state"] for x in links_of(client, backup["id"])] == ["revoked", "revoked"]


def test_the_cli_builds_the_address_from_server_name(make_app, run_worker):
    app = make_app(SERVER_NAME="shop.example.com", PREFERRED_URL_SCHEME="https")
    client = app.test_client()
    backup = client.post(
        f"{API}/backups", json={"format": "sqlite3"}, base_url="https://shop.example.com"
    ).json
    run_worker()
    out = app.test_cli_runner().invoke(args=["backups", "link", str(backup["id"])])
    assert out.exit_code == 0, out.output
    assert re.fullmatch(
        r"https://shop\.example\.com/backups/l/[A-Za-z0-9_-]{43}", out.stdout.strip()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "h"], "Error: --base-url must be an http:// or https:// address, not 'h'."),
        (
            [],
            "Error: The link needs the address people reach the app at: give --base-url "
            "https://your.site, or set SERVER_NAME.",
        ),
        (
            ["--expires", "soon", "--base-url", "http://h"],
            "Error: --expires must be hours or days such as 72h or 3d, not 'soon'.",
        ),
        (
            ["--expires", "31d", "--base-url", "http://h"],
            "Error: --expires must be a "
            "whole number of hours from 1 to 720 (BACKUP_MANAGER_LINK_MAX_AGE), not '744'.",
        ),
        (
            ["--max-downloads", "0", "--base-url", "http://h"],
            "Error: --max-downloads must be a "
            "whole number from 1 to 1,000,000, or none for no limit, not '0'.",
        ),
        (
            ["--note", "two\nlines", "--base-url", "http://h"],
            "Error: --note must be one line of at most 200 characters.",
        ),
        (["--revoke", "42"], "Error: No such link."),
        (["--list", "--revoke", "1"], "Error: --list and --revoke go alone: give one of them."),
    ],
)
def test_cli_errors_are_one_line(app, client, run_worker, args, message):
    backup = made(client, run_worker)
    out = app.test_cli_runner().invoke(args=["backups", "link", str(backup["id"]), *args])
    assert out.exit_code == 1
    assert out.output.strip() == message
    assert links_of(client, backup["id"]) == []


def test_the_cli_refuses_an_unknown_backup_in_one_line(runner):
    out = runner.invoke(args=["backups", "link", "999", "--base-url", "http://h"])
    assert out.exit_code == 1 and out.output.strip() == "Error: No such backup."


# -- PostgreSQL: the database's own clock and timestamptz -------------------------------------


def test_a_link_on_postgresql_counts_and_expires(pg_app, run_worker, host_env):
    client = pg_app.test_client()
    backup = made(client, run_worker, "postgres")
    link = new_link(client, backup["id"], max_downloads=1, expires_in_hours=1)
    got = fetch(client, link)
    assert got.status_code == 200 and hashlib.sha256(got.data).hexdigest() == backup["sha256"]
    assert fetch(client, link).status_code == 404
    assert "psql -X -v ON_ERROR_STOP=1" in client.get(
        path_of(new_link(client, backup["id"]))
    ).get_data(as_text=True)
    fresh = new_link(client, backup["id"], expires_in_hours=1)
    clock = Clock()
    clock.at = datetime.now(timezone.utc) + timedelta(hours=1, seconds=5)
    pg_app.extensions["backup_manager"].clock = clock
    assert fetch(client, fresh).status_code == 404  # expired by the database's comparison


def test_a_file_damaged_in_storage_is_never_sent_through_a_link(app, client, run_worker):
    backup = made(client, run_worker)
    link = new_link(client, backup["id"], max_downloads=1)
    path = app.extensions["backup_manager"].storage_dir / backup["filename"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, another byte
    path.write_bytes(bytes(data))
    answer = fetch(client, link, Accept="application/json")
    assert answer.status_code == 500
    assert answer.json["error"]["code"] == "checksum_mismatch"
    assert links_of(client, backup["id"])[0]["downloads"] == 0


def test_the_link_page_says_how_to_restore_each_format_and_an_encrypted_file():
    from flask_backup_manager.presenters import restore_commands

    assert restore_commands("postgres", "a.postgres.sql.gz") == [
        "python -m flask_backup_manager restore a.postgres.sql.gz --target postgresql:///newdb",
        "gunzip -c a.postgres.sql.gz | psql -X -v ON_ERROR_STOP=1 --single-transaction -d newdb",
    ]
    assert restore_commands("sqlite3", "a.sqlite3.sql.gz.age") == [
        "python -m flask_backup_manager restore a.sqlite3.sql.gz.age --identity vendor.key "
        "--target sqlite:///new.db",
        "age -d -i vendor.key a.sqlite3.sql.gz.age | gunzip | sqlite3 -safe new.db",
    ]
    assert restore_commands("postgres", "a.postgres.sql.gz.age") == [
        "python -m flask_backup_manager restore a.postgres.sql.gz.age --identity vendor.key "
        "--target postgresql:///newdb",
        "age -d -i vendor.key a.postgres.sql.gz.age | gunzip"
        " | psql -X -v ON_ERROR_STOP=1 --single-transaction -d newdb",
    ]
    assert restore_commands("sqlite3_db", "a.sqlite3.age") == [  # no age program needed
        "python -m flask_backup_manager restore a.sqlite3.age --identity vendor.key "
        "--target sqlite:///a.sqlite3",
        "age -d -i vendor.key -o a.sqlite3 a.sqlite3.age",
    ]


def test_no_link_leaves_with_a_later_backup(app, client, run_worker):
    """The links table is the Backup Manager's own: a backup carries it empty, so neither a
    token's hash nor a note reaches the vendor."""
    first = made(client, run_worker)
    link = new_link(client, first["id"], note="ticket #4711 secret-note")
    second = made(client, run_worker)
    data = gzip.decompress(stored(app, second))
    digest = hashlib.sha256(link["token"].encode()).hexdigest().encode()
    assert b"backup_manager_links" in data  # the table, without its rows
    assert digest not in data and b"secret-note" not in data
    assert link["token"].encode() not in data


def test_two_downloads_at_once_cannot_both_take_the_last_one(pg_app, run_worker):
    """Eight clients start a one-download link's download at the same moment, on PostgreSQL:
    exactly one gets the file."""
    client = pg_app.test_client()
    backup = made(client, run_worker, "postgres")
    link = new_link(client, backup["id"], max_downloads=1)
    barrier, answers = threading.Barrier(8), []

    def download() -> None:
        mine = pg_app.test_client()
        barrier.wait(timeout=30)
        answers.append(fetch(mine, link).status_code)

    threads = [threading.Thread(target=download) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(answers) == [200] + [404] * 7
    assert links_of(client, backup["id"])[0]["downloads"] == 1
