"""How a checked backup file is sent over HTTP (:func:`.service.download` hands it over):
one answer for the API's download and a link's, with werkzeug's Range, If-Range and
conditional rules on the bytes that were checked."""

from __future__ import annotations

from typing import Any

from flask import Response, redirect, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable

from . import service
from .errors import BackupManagerError


def send_stored(stored: service.StoredFile) -> tuple[Response, bool]:
    """The answer for the checked file, and whether it sends the file's bytes (for a file an
    object store hands out: a redirect to its presigned URL, which a HEAD does not follow)."""
    backup, size = stored.backup, stored.size
    if stored.url is not None:
        if request.method == "HEAD":  # answered here: the URL is signed for a GET only
            response = Response(status=200, mimetype=stored.mimetype)
            response.content_length = size
            response.set_etag(backup.sha256)
            response.headers["Accept-Ranges"] = "bytes"
            response.headers["Content-Disposition"] = f'attachment; filename="{backup.filename}"'
        else:
            response = redirect(stored.url, 302)
        response.headers["Cache-Control"] = "no-store"  # the URL expires within minutes
        response.headers["X-Backup-SHA256"] = backup.sha256
        return response, request.method != "HEAD"
    response = send_file(
        stored.file,  # the response closes it once the body is sent
        as_attachment=True,
        download_name=backup.filename,
        mimetype=stored.mimetype,
        conditional=False,
        etag=backup.sha256,
        last_modified=stored.mtime,
        max_age=0,
    )
    response.headers["X-Backup-SHA256"] = backup.sha256
    response.content_length = size  # the bytes hashed, not what the file may have grown to
    try:
        # Range, If-Range, If-Modified-Since, If-Match: werkzeug's rules on the checked file
        response.make_conditional(request, accept_ranges=True, complete_length=size)
    except RequestedRangeNotSatisfiable:
        raise BackupManagerError(
            416, "range_not_satisfiable", f"The file of backup {backup.id} has no such range."
        ) from None
    # make_conditional dates the answer, and the web server (werkzeug's, gunicorn...) adds
    # its own Date to every answer: the server's is the one sent
    del response.headers["Date"]
    if response.status_code in (200, 206):
        return response, request.method != "HEAD"
    # werkzeug leaves the file as the body of its 304 and 412 answers: only 200/206 carry it
    response.close()
    if response.status_code == 304:
        return not_modified(backup), False
    raise BackupManagerError(
        412, "precondition_failed", f"The file of backup {backup.id} does not match If-Match."
    )


def not_modified(backup: Any) -> Response:
    response = Response(status=304)
    response.set_etag(backup.sha256)
    return response


def send_from(stored: service.StoredFile) -> tuple[Response, int | None]:
    """:func:`send_stored`, and the first byte its answer sends (None: it sends none), which
    decides whether a download through a link counts (links.py)."""
    response, delivered = send_stored(stored)
    if not delivered:
        return response, None
    if stored.url is not None:  # the store answers the Range: its first byte is the one asked
        first = request.range.ranges[0][0] if request.range and request.range.ranges else 0
        return response, first if first >= 0 else max(stored.size + first, 0)
    if response.status_code == 206 and response.content_range is not None:
        return response, response.content_range.start
    return response, 0
