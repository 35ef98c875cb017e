"""Error answers as people and scripts meet them: a page inside the host's layout that says
what happened and what to do, with a way back that is not another refusal; JSON for every path
under the API, known or not; the host's own error pages left alone."""

from __future__ import annotations

import pytest
from jinja2 import ChoiceLoader, DictLoader
from playwright.sync_api import Browser, expect

from .conftest import sign_in

HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
API = "/backups/api"

#: The host's layout: its navigation, with a way to sign out, around our pages.
LAYOUT = """<!doctype html>
<html><head><title>{% block title %}{% endblock %} | Host</title>{% block head %}{% endblock %}
</head><body><nav data-testid="host-nav"><a href="/">Host home</a>
<a href="/account">My account</a> <a href="/logout">Sign out</a></nav>
{% block content %}{% endblock %}{% block scripts %}{% endblock %}</body></html>"""


@pytest.fixture
def hosted(make_app):
    """The test host app with its own layout as BACKUP_MANAGER_BASE_TEMPLATE."""
    app = make_app(BACKUP_MANAGER_BASE_TEMPLATE="host/layout.html")
    app.jinja_env.loader = ChoiceLoader(
        [DictLoader({"host/layout.html": LAYOUT}), app.jinja_env.loader]
    )
    return app


def error_page(answer, status: int) -> str:
    assert answer.status_code == status, answer.text[:2000]
    assert answer.mimetype == "text/html"
    page = answer.text
    assert 'data-testid="host-nav"' in page and "Sign out" in page  # inside the host's layout
    assert 'data-testid="error-page"' in page
    return page


def test_the_403_page_says_which_permission_to_ask_for_and_links_home_not_to_a_403(hosted):
    client = hosted.test_client()
    page = error_page(
        client.get("/backups/", headers={**HTML, "X-Test-Permissions": "download"}), 403
    )
    assert "You are not allowed to view backups." in page
    assert "Ask an administrator of this site to give your account the \u201cview\u201d" in page
    assert 'href="/backups/"' not in page  # the list would be one more 403
    assert '<a href="/">&lsaquo; The site&#39;s home page</a>' in page

    # who may view but not create is sent back to the list
    page = error_page(
        client.get("/backups/new", headers={**HTML, "X-Test-Permissions": "view"}), 403
    )
    assert "\u201ccreate\u201d permission" in page
    assert '<a href="/backups/">&lsaquo; All backups</a>' in page


def test_the_404_page_says_the_backup_may_have_been_deleted_and_links_to_the_list(hosted):
    page = error_page(hosted.test_client().get("/backups/424242", headers=HTML), 404)
    assert "No such backup." in page
    assert "The backup may have been deleted" in page
    assert '<a href="/backups/">&lsaquo; All backups</a>' in page
    assert '<a href="/backups/activity">&lsaquo; Activity</a>' in page


def test_a_download_of_a_missing_or_damaged_file_is_explained_to_a_browser(hosted, run_worker):
    client = hosted.test_client()
    backup = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json
    run_worker()
    url = f"{API}/backups/{backup['id']}/download"
    path = hosted.extensions["backup_manager"].storage_dir / backup["filename"]

    with open(path, "r+b") as f:  # damaged in storage
        f.seek(100)
        f.write(b"X")
    page = error_page(client.get(url, headers=HTML), 500)
    assert f"The file of backup {backup['id']} no longer matches its sha256" in page
    assert "delete this backup and create a new one" in page

    path.unlink()  # gone from storage
    page = error_page(client.get(url, headers=HTML), 410)
    assert f"The file of backup {backup['id']} is missing from storage." in page
    assert "delete this backup and create a new one" in page

    # a script (no Accept, or */*) still gets the API's JSON
    for headers in ({}, {"Accept": "*/*"}, {"Accept": "application/json"}):
        answer = client.get(url, headers=headers)
        assert answer.status_code == 410 and answer.json["error"]["code"] == "file_missing"


def test_queue_down_answers_what_to_check_with_the_technical_cause_apart(app, client):
    state = app.extensions["backup_manager"]
    good_url, state.redis_url = state.redis_url, "redis://127.0.0.1:1/0"  # nothing listens
    app.extensions.pop("backup_manager_redis", None)
    try:
        answer = client.post(f"{API}/backups", json={"format": "sqlite3_db"})
        listing = client.get(f"{API}/backups").json
    finally:
        state.redis_url = good_url
        app.extensions.pop("backup_manager_redis", None)
    assert answer.status_code == 503
    error = answer.json["error"]
    assert error["message"] == (
        f"The job queue (Redis) cannot be reached, so backup {listing['backups'][0]['id']} was "
        "not started: check that Redis is running and that BACKUP_MANAGER_REDIS_URL points at it."
    )
    assert "127.0.0.1:1" in error["detail"] and "127.0.0.1" not in error["message"]
    assert listing["warning"].startswith("The job queue is unavailable, so no backup can start")


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("get", "/backups/api/nope", 404, None),
        ("get", "/backups/api/backups/1/nope", 404, None),
        ("delete", "/backups/api/audit/x/y", 404, None),
        ("put", "/backups/api/backups", 405, "GET, HEAD, OPTIONS, POST"),
        ("post", "/backups/api/backups/1", 405, "DELETE, GET, HEAD, OPTIONS"),
        ("get", "/backups/api/backups/1/cancel", 405, "OPTIONS, POST"),
    ],
)
def test_unknown_api_paths_and_methods_answer_json_even_to_a_browser(
    client, method, path, status, allow
):
    for headers in ({}, HTML):
        answer = getattr(client, method)(path, headers=headers)
        assert answer.status_code == status, (path, headers)
        assert answer.mimetype == "application/json"
        error = answer.json["error"]
        assert error["code"] == ("not_found" if status == 404 else "method_not_allowed")
        assert path in error["message"]
        assert answer.headers.get("Allow") == allow
        assert answer.headers["Cache-Control"] == "no-store"


def test_the_hosts_own_404s_are_left_to_the_host(make_app):
    app = make_app()

    @app.errorhandler(404)
    def host_not_found(e):
        return "the host's own 404 page", 404

    client = app.test_client()
    for path in ("/nope", "/backups/1/nope", "/backupsapi/nope"):
        answer = client.get(path, headers=HTML)
        assert answer.status_code == 404 and answer.text == "the host's own 404 page", path
    assert client.get("/backups/api/nope").json["error"]["code"] == "not_found"


def test_with_redis_down_the_admin_sees_what_to_do_inside_the_shops_layout(
    browser: Browser, make_demo
):
    demo = make_demo(workers=0, REDIS_URL="redis://127.0.0.1:1")
    page = sign_in(browser, demo)
    try:
        shop_nav = page.get_by_role("navigation", name="Main")
        page.goto("/backups/new")
        warning = page.get_by_test_id("worker-warning")
        expect(warning).to_contain_text("The job queue is unavailable, so no backup can start")
        expect(warning).to_contain_text("check that Redis is running")
        page.get_by_test_id("create-backup").click()

        # the refusal, on the page to try again from, with the shop around it
        flash = page.locator(".bm").get_by_test_id("flash")
        expect(flash).to_contain_text("The job queue (Redis) cannot be reached, so backup 1")
        expect(flash).to_contain_text("check that Redis is running")
        expect(flash).not_to_contain_text("Error 111")
        expect(shop_nav.get_by_role("button", name="Sign out")).to_be_visible()
        expect(shop_nav.get_by_role("link", name="Backups")).to_be_visible()

        # an error page keeps the shop's navigation too, with advice and a way back
        answer = page.goto("/backups/999999")
        assert answer is not None and answer.status == 404
        expect(page.get_by_test_id("error-advice")).to_have_text(
            "The backup may have been deleted (the Activity page still lists what happened to "
            "it), or the address is mistyped."
        )
        expect(shop_nav.get_by_role("button", name="Sign out")).to_be_visible()
        page.get_by_test_id("error-page").get_by_role("link", name="All backups").click()
        row = page.get_by_test_id("backup-row").first
        expect(row.get_by_test_id("status")).to_have_text("failed")
        expect(row).to_contain_text("queue unavailable")
    finally:
        page.context.close()
