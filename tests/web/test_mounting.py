"""Mounting the Backup Manager into an existing app, as its developer meets it: the pages inside
a layout that needs the host's own context, the host's login for a logged-out visitor, and the
``backups`` commands in the host's own console script."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, g, redirect, request, url_for
from flask_login import LoginManager, UserMixin, current_user, login_user
from jinja2 import ChoiceLoader, DictLoader, StrictUndefined, pass_context

from ..conftest import ROOT

HTML = {"Accept": "text/html"}
API = "/backups/api"

#: A host layout that needs the host's context everywhere: a context processor's values (one of
#: them named ``page``, as our list page's number), jinja globals (one named ``time``, as our
#: time macro; one ``csrf_token``, as Flask-WTF's), a filter, and ``g``. Undefined is strict,
#: so anything missing is a 500, not an empty string.
LAYOUT = """<!doctype html>
<html><head><title>{% block title %}{% endblock %} | {{ site_name }}</title>
{% block head %}{% endblock %}</head>
<body><nav data-testid="host-nav">{{ site_name }} / theme {{ current_theme() }} /
{{ "welcome" | shout }} / tenant {{ g.tenant }} / {{ page.slug }} / {{ time() }} /
host token {{ csrf_token() }}</nav>
{% block content %}{% endblock %}
{% block scripts %}{% endblock %}</body></html>"""
HOST_VALUES = [
    "| ACME Shop</title>",
    "ACME Shop / theme dark /",
    "WELCOME! / tenant t-42 / host-page / host time /",
    "host token host-token</nav>",
]


class HostPage:
    slug = "host-page"


def use_layout(app: Flask, layout: str) -> None:
    app.jinja_env.loader = ChoiceLoader(
        [DictLoader({"shop/layout.html": layout}), app.jinja_env.loader]
    )


@pytest.fixture
def themed(make_app):
    """The host app with its themed layout as BACKUP_MANAGER_BASE_TEMPLATE."""
    app = make_app(BACKUP_MANAGER_BASE_TEMPLATE="shop/layout.html")
    app.jinja_env.undefined = StrictUndefined
    use_layout(app, LAYOUT)

    @app.context_processor
    def shop_context() -> dict:
        return {"site_name": "ACME Shop", "page": HostPage()}

    @app.template_global()
    def current_theme() -> str:
        return "dark"

    app.add_template_global(lambda: "host time", "time")
    app.add_template_global(lambda: "host-token", "csrf_token")

    @app.template_filter()
    def shout(text: str) -> str:
        return text.upper() + "!"

    @app.before_request
    def tenant() -> None:
        g.tenant = "t-42"

    return app


def assert_in_host_layout(page: str) -> None:
    for value in HOST_VALUES:
        assert value in page, value
    assert 'class="bm-topbar"' not in page  # not the standalone page


def token(client) -> str:
    page = client.get("/backups/", headers=HTML)
    return re.search(r'data-csrf-token="([^"]+)"', page.text).group(1)


def test_every_page_renders_inside_a_layout_that_needs_the_hosts_context(themed, run_worker):
    client = themed.test_client()
    backup_id = client.post(f"{API}/backups", json={"format": "sqlite3_db"}).json["id"]
    run_worker()

    listing = client.get("/backups/", headers=HTML)
    assert listing.status_code == 200
    assert_in_host_layout(listing.text)
    assert f'data-backup-id="{backup_id}" data-status="succeeded"' in listing.text
    assert "<title>Backups | ACME Shop</title>" in listing.text

    new = client.get("/backups/new", headers=HTML)
    assert new.status_code == 200
    assert_in_host_layout(new.text)
    assert 'name="format" value="sqlite3_db"' in new.text

    refused = client.post(
        "/backups/", data={"format": "zip", "csrf_token": token(client)}, follow_redirects=True
    )
    assert refused.status_code == 200 and refused.request.path == "/backups/new"
    assert_in_host_layout(refused.text)
    assert 'data-testid="flash"' in refused.text and "Unknown format" in refused.text

    created = client.post("/backups/", data={"format": "sqlite3", "csrf_token": token(client)})
    assert created.status_code == 303

    detail = client.get(f"/backups/{backup_id}", headers=HTML)
    assert detail.status_code == 200
    assert_in_host_layout(detail.text)
    assert "table customers: 50 rows" in detail.text  # its log
    assert 'data-testid="download"' in detail.text and "<time datetime=" in detail.text
    assert f"<title>Backup {backup_id} | ACME Shop</title>" in detail.text


@pytest.mark.parametrize(
    ("path", "headers", "status", "says"),
    [
        ("/backups/424242", {}, 404, "No such backup."),
        ("/backups/", {"X-Test-Permissions": "download"}, 403, "You are not allowed to view"),
        ("/backups/?page=x", {}, 400, "page must be a whole number"),
    ],
)
def test_error_pages_render_inside_the_hosts_layout_too(themed, path, headers, status, says):
    answer = themed.test_client().get(path, headers={**HTML, **headers})
    assert answer.status_code == status
    assert_in_host_layout(answer.text)
    assert 'data-testid="error-page"' in answer.text and says in answer.text
    assert f"<title>{status} " in answer.text


@pass_context
def theme_static(ctx, filename: str) -> str:
    """As Flask-Themes2's ``theme_static``: the theme comes from the context its own render
    function passes (``_theme``), not from a context processor."""
    if "_theme" not in ctx:
        raise RuntimeError("Could not find the active theme")
    return f"/_themes/{ctx['_theme']}/{filename}"


THEMED = """<link rel="stylesheet" href="{{ theme_static('style.css') }}">
{% block content %}{% endblock %}"""


def test_what_the_hosts_own_render_function_passes_is_given_by_a_context_processor(make_app):
    app = make_app(BACKUP_MANAGER_BASE_TEMPLATE="shop/layout.html")
    use_layout(app, THEMED)
    app.add_template_global(theme_static, "theme_static")
    app.context_processor(lambda: {"_theme": "autumn"})  # the README's advice
    client = app.test_client()
    for path in ("/backups/", "/backups/new", "/backups/424242"):
        page = client.get(path, headers=HTML).text
        assert 'href="/_themes/autumn/style.css"' in page, path


def test_an_error_page_whose_layout_fails_is_shown_standalone_and_logged(make_app, caplog):
    app = make_app(BACKUP_MANAGER_BASE_TEMPLATE="shop/layout.html")
    use_layout(app, THEMED)  # and no _theme: the layout fails on every page
    app.add_template_global(theme_static, "theme_static")
    with caplog.at_level(logging.ERROR):
        answer = app.test_client().get("/backups/424242", headers=HTML)
    assert answer.status_code == 404
    assert 'class="bm-topbar"' in answer.text and "No such backup." in answer.text
    assert "the layout failed on a Backup Manager error page" in caplog.text
    assert "Could not find the active theme" in caplog.text


# -- a logged-out visitor gets the host's login ---------------------------------------------


class User(UserMixin):
    def __init__(self, user_id: str, admin: bool) -> None:
        self.id, self.is_admin = user_id, admin


USERS = {"1": User("1", admin=True), "2": User("2", admin=False)}


def with_login(app: Flask, login_view: str | None = "shop_login") -> None:
    """Flask-Login on the host app, a login page, and the README's access check."""
    manager = LoginManager(app)
    manager.login_view = login_view
    manager.user_loader(USERS.get)

    @app.route("/login", methods=["GET", "POST"], endpoint="shop_login")
    def shop_login():
        if request.method == "POST":
            login_user(USERS[request.form["user"]])
            return redirect(request.args.get("next") or "/")
        return "<h1>Shop login</h1>"

    backups = app.extensions["backup_manager"].ext  # the app's BackupManager object
    backups.access_check(lambda permission: current_user.is_authenticated and current_user.is_admin)


@pytest.fixture
def login_app(make_app):
    app = make_app(HOSTAPP_ACCESS="none")  # no header check: the access check below
    with_login(app)
    return app


def log_in(client, user: str) -> None:
    assert client.post("/login", data={"user": user}).status_code == 302


def test_logged_out_visitor_is_sent_to_the_hosts_login_with_next(login_app):
    client = login_app.test_client()
    answer = client.get("/backups/", headers=HTML)
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    assert location.path == "/login" and parse_qs(location.query) == {"next": ["/backups/"]}
    assert "Shop login" in client.get(answer.headers["Location"]).text

    detail = client.get("/backups/7", headers=HTML)
    assert parse_qs(urlsplit(detail.headers["Location"]).query) == {"next": ["/backups/7"]}

    log_in(client, "1")  # the admin logs in and gets the pages
    assert client.get("/backups/", headers=HTML).status_code == 200


def test_logged_in_user_without_the_permission_gets_the_403_page(login_app):
    client = login_app.test_client()
    log_in(client, "2")
    answer = client.get("/backups/", headers=HTML)
    assert answer.status_code == 403
    assert 'data-testid="error-page"' in answer.text


@pytest.mark.parametrize("user", [None, "2"])
def test_the_api_answers_json_403_logged_out_or_not(login_app, user):
    client = login_app.test_client()
    if user:
        log_in(client, user)
    for method, path in [("get", "/backups"), ("post", "/backups"), ("get", "/backups/1/logs")]:
        answer = getattr(client, method)(API + path, headers=HTML, json={"format": "sqlite3"})
        assert answer.status_code == 403, (method, path)
        assert answer.json == {
            "error": {
                "code": "forbidden",
                "message": answer.json["error"]["message"],
                "permission": "view" if method == "get" else "create",
            }
        }
        assert "Location" not in answer.headers


def test_without_a_login_view_flask_login_answers_401(make_app):
    app = make_app(HOSTAPP_ACCESS="none")
    with_login(app, login_view=None)
    assert app.test_client().get("/backups/", headers=HTML).status_code == 401


def test_the_hosts_on_denied_hook_decides_what_a_turned_away_browser_gets(login_app):
    backups = login_app.extensions["backup_manager"].ext

    @backups.on_denied
    def to_single_sign_on(permission: str):
        if current_user.is_authenticated:
            return None  # the 403 page
        return redirect(url_for("shop_login", sso="1", wanted=permission), code=303)

    client = login_app.test_client()
    answer = client.get("/backups/new", headers=HTML)
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/login?sso=1&wanted=create"

    api = client.get(f"{API}/backups")
    assert api.status_code == 403 and api.json["error"]["code"] == "forbidden"

    log_in(client, "2")
    assert client.get("/backups/new", headers=HTML).status_code == 403


# -- the host's own console script -----------------------------------------------------------


def console_script(bin_dir, group: str):
    """``myapp-cli``, as pip writes a console script for ``myapp-cli = tests.hostcli:<group>``."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / "myapp-cli"
    path.write_text(
        f"#!{sys.executable}\nimport sys\nfrom tests.hostcli import {group}\nsys.exit({group}())\n"
    )
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("group", ["cli", "plain"])
def test_the_hosts_console_script_lists_backups_and_runs_the_worker(app, host_env, tmp_path, group):
    script = console_script(tmp_path / "bin", group)
    env = {**os.environ, **host_env, "PYTHONPATH": str(ROOT)}
    env.pop("FLASK_APP", None)

    def run(*args: str) -> str:
        out = subprocess.run(
            [str(script), "backups", *args],
            cwd=tmp_path,  # no app.py or wsgi.py to stumble upon: the script names the app
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        return out.stdout

    assert run("list").strip() == "No backups."
    assert run("create", "--format", "sqlite3_db").strip() == "Backup 1 queued (sqlite3_db)."
    run("worker", "--burst")
    listing = run("list").splitlines()
    assert listing[1].split()[:3] == ["1", "sqlite3_db", "succeeded"]
    assert "table customers: 50 rows" in run("show", "1")
