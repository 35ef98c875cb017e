"""Reviewer attacks on the web side of issue 12 (through Flask's test client and real
workers): what a hostile customer's data or a host's own setup could do to the pages and the
API, each pinned by what the admin or a script would see."""

from __future__ import annotations

from werkzeug.exceptions import HTTPException

from .test_pages import API, HTML


def test_a_host_handler_of_every_http_error_leaves_the_apis_answers_json(make_app):
    """Flask's documented "generic exception handler" (errorhandler(HTTPException)) in the
    host must not turn the API's JSON errors, or our error pages, into the host's page."""
    app = make_app()

    @app.errorhandler(HTTPException)
    def host_generic(e):
        return f"the host's page for {e.code}", e.code

    client = app.test_client()
    for path, code in (
        (f"{API}/backups/999", "not_found"),
        (f"{API}/nope", "not_found"),
        (f"{API}/backups?page=x", "bad_argument"),
    ):
        answer = client.get(path)
        assert answer.mimetype == "application/json", path
        assert answer.json["error"]["code"] == code, path
    page = client.get("/backups/999", headers=HTML)
    assert page.status_code == 404 and 'data-testid="error-page"' in page.text
    # the host's own errors stay the host's
    assert client.get("/nope", headers=HTML).text == "the host's page for 404"
