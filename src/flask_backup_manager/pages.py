"""The HTML pages: list, create, detail, delete, cancel. Each is one service call and a template
(their URLs: blueprint.py)."""

from __future__ import annotations

import re
from typing import Any

from flask import redirect, render_template, request, url_for
from markupsafe import Markup, escape

from . import presenters, service
from .access import current_user_name, requires
from .errors import int_arg
from .models import FINISHED
from .state import get_state


def may(permission: str) -> bool:
    """``backup_manager.may("delete")`` in a template: show only the buttons the host's check
    would allow."""
    check = get_state().ext._access
    return bool(check and check(permission))


def code_filter(text: str) -> Markup:
    """Template filter: escape ``text`` and show its `backquoted` parts (commands, in
    descriptions) as code."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def render(template: str, **values: Any) -> str:
    """Render one of our pages with the app's whole context (its context processors and
    globals) and this page's ``values`` under the one name ``bm``: a name of the host's layout
    (``page``, ``error``, ...) is never shadowed by ours."""
    return render_template(f"backup_manager/{template}", bm=values)


@requires("view")
def index() -> Any:
    page = int_arg("page", 1)
    items, total = service.list_backups(page)
    per_page = get_state().per_page
    return render(
        "list.html",
        backups=[presenters.to_dict(b) for b in items],
        page=page,
        pages=max(1, -(-total // per_page)),
        total=total,
    )


@requires("create")
def new() -> Any:
    return render("new.html", formats=service.formats(), error=None)


@requires("create")
def create() -> Any:
    try:
        service.create_backup(request.form.get("format"), created_by=current_user_name())
    except service.ServiceError as e:
        if e.status not in (400, 429):
            raise
        # a refused choice is shown on the form it came from, with the choices again
        return render("new.html", formats=service.formats(), error=e.message), e.status
    return redirect(url_for(".index"), code=303)


@requires("view")
def detail(backup_id: str) -> Any:
    backup = service.get_backup(backup_id)
    return render(
        "detail.html",
        backup=presenters.to_dict(backup),
        logs=service.backup_logs(backup),
        audit=service.audit_trail(backup.id),
        finished=backup.status in FINISHED,
    )


@requires("delete")
def delete(backup_id: str) -> Any:
    service.delete_backup(service.get_backup(backup_id), actor=current_user_name())
    return redirect(url_for(".index"), code=303)


@requires("create")
def cancel(backup_id: str) -> Any:
    backup = service.cancel_backup(service.get_backup(backup_id), actor=current_user_name())
    return redirect(url_for(".detail", backup_id=backup.id), code=303)
