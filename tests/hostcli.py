"""The test host app's own console scripts, written as a host with one writes them: each adds
the Backup Manager's ``backups`` group in one line. ``cli`` is Flask's ``FlaskGroup`` given the
app factory; ``plain`` is a plain click group that hands the factory to Flask's ``ScriptInfo``.
tests/web/test_mounting.py runs them as installed console scripts (``myapp-cli backups ...``)."""

from __future__ import annotations

import click
from flask.cli import FlaskGroup, ScriptInfo

from flask_backup_manager import BackupManager

from .hostapp import create_app

cli = FlaskGroup(create_app=create_app, help="The test host's console script.")
cli.add_command(BackupManager.cli)


@click.group(help="The test host's console script, a plain click group.")
@click.pass_context
def plain(ctx: click.Context) -> None:
    ctx.obj = ScriptInfo(create_app=create_app)


plain.add_command(BackupManager.cli)
