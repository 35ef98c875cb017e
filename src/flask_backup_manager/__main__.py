"""``python -m flask_backup_manager export --source URL --format FMT --output PATH``
(``--redact KEY=RULE``..., ``--encrypt-to KEY``..., ``--manifest PATH``,
``--verify-postgres-url URL``, ``--no-verify``), ``restore FILE --target URL
[--identity KEYFILE]``, and ``keygen [-o FILE]``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TypeVar

from .engine import (
    FORMATS,
    ExportError,
    Profile,
    RedactionError,
    escape_controls,
    export,
    profile_from_mapping,
)
from .engine.encryption import Recipient, keygen, parse_recipient, read_recipients

T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flask_backup_manager")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="copy a database into a backup file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="SQLAlchemy URL: postgresql://... or sqlite:///path")
    src.add_argument(
        "--source-env",
        metavar="VAR",
        help="read the URL from this environment variable (keeps a password off the command line)",
    )
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--output", required=True, help="the file to write")
    p.add_argument("--include", nargs="+", metavar="TABLE", help="copy only these tables")
    p.add_argument("--exclude", nargs="+", metavar="TABLE", help="leave these tables out")
    p.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="KEY=RULE",
        help="redact a column or table (repeatable): users.email=email, users.password_hash=null,"
        " sessions=no_rows, orders.note=fixed:n/a, ...; the rules make one profile named 'cli'",
    )
    p.add_argument(
        "--encrypt-to",
        action="append",
        default=[],
        metavar="KEY",
        help="encrypt the file (age) to this public key: age1..., 'ssh-ed25519 AAAA...', or a"
        " file of such keys, one a line, as age -R reads it (repeatable); '.age' is added to"
        " the output's name if it lacks it",
    )
    p.add_argument(
        "--manifest",
        metavar="PATH",
        help="also write the backup's manifest (JSON: source, tables and rows, redaction,"
        " file, verification) to this file",
    )
    p.add_argument(
        "--verify-postgres-url",
        metavar="URL",
        default=os.environ.get("BACKUP_MANAGER_VERIFY_POSTGRES_URL"),
        help="a postgres file is restored into a scratch database created (and dropped) on"
        " this server to verify it; the role must be an ordinary one with CREATEDB"
        " (default: $BACKUP_MANAGER_VERIFY_POSTGRES_URL; without it the file is read through"
        " and its COPY rows counted, not loaded)",
    )
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="skip loading the file to compare its rows with the database's: for measuring"
        " what verification costs only; a backup made so was never checked to load",
    )
    r = sub.add_parser(
        "restore",
        help="load a backup file (any format, encrypted or not) into a new database, running no"
        " psql or sqlite3 command in it",
    )
    r.add_argument("file", help="the backup file (gzipped or not)")
    tgt = r.add_mutually_exclusive_group(required=True)
    tgt.add_argument(
        "--target",
        help="an empty database: postgresql://... (created, empty) or sqlite:///new.db (new file)",
    )
    tgt.add_argument(
        "--target-env",
        metavar="VAR",
        help="read the target URL from this environment variable (keeps a password off the"
        " command line)",
    )
    r.add_argument(
        "--identity",
        metavar="KEYFILE",
        help="the secret key that decrypts an encrypted (.age) file: an age identity file"
        " (AGE-SECRET-KEY-1..., as keygen or age-keygen write it) or an SSH private key",
    )
    r.add_argument(
        "--as-superuser",
        action="store_true",
        help="let a PostgreSQL superuser load the file (sets flask_backup_manager."
        "restore_as_superuser = on, which the file's guard checks): loading a schema runs its"
        " functions as the restoring role, so prefer an ordinary role that owns the database",
    )
    k = sub.add_parser(
        "keygen", help="make a new age key pair for encrypted backups (the vendor's, once)"
    )
    k.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the key pair to this new file (mode 0600) instead of printing it",
    )
    args = parser.parse_args(argv)
    if args.command == "restore":
        return _restore(parser, args)
    if args.command == "keygen":
        return _keygen(args.output)
    source = args.source or os.environ.get(args.source_env)
    if not source:
        parser.error(f"environment variable {args.source_env} is not set")
    try:
        profile = cli_profile(args.redact)
    except RedactionError as e:
        print(f"error: {escape_controls(str(e))}", file=sys.stderr)
        return 2
    output = args.output
    recipients = []
    if args.encrypt_to:
        try:
            recipients = cli_recipients(args.encrypt_to)
        except (ValueError, ExportError) as e:
            print(f"error: --encrypt-to: {escape_controls(str(e))}", file=sys.stderr)
            return 2
        if not output.endswith(".age"):
            output += ".age"
    result = _run(
        lambda: export(
            source,
            args.format,
            output,
            include=args.include,
            exclude=args.exclude,
            redaction=profile,
            # when, as the app's manifests say it; by whom is not the command's to know
            manifest={"created_at": _now(), "created_by": None},
            verify=not args.no_verify,
            verify_postgres_url=args.verify_postgres_url,
            recipients=recipients,
        )
    )
    if result is None:
        return 1
    if args.manifest:
        try:
            with open(args.manifest, "w", encoding="utf-8") as f:
                json.dump(result.manifest, f, indent=2, ensure_ascii=True, default=str)
                f.write("\n")
        except OSError as e:
            print(
                f"error: cannot write the manifest: {escape_controls(str(e))}"
                f" (the backup itself is written: {escape_controls(str(result.path))})",
                file=sys.stderr,
            )
            return 1
    for warning in result.warnings:
        print(f"warning: {escape_controls(warning)}", file=sys.stderr)
    print(
        f"{result.path}: {result.tables} tables, {result.rows} rows, {result.size} bytes, "
        f"sha256 {result.sha256}"
    )
    if result.verification is not None:
        print(escape_controls(result.verification.summary()))
    return 0


def cli_profile(rules: list[str]) -> Profile | None:
    """The profile named ``cli`` of the ``--redact KEY=RULE`` options, or None for none;
    RedactionError (one line naming the key) for a malformed one."""
    if not rules:
        return None
    mapping: dict[str, str] = {}
    for text in rules:
        key, sep, rule = text.partition("=")
        if not sep or not key or not rule:
            raise RedactionError(f"--redact {text!r}: expected KEY=RULE, e.g. users.email=email")
        if key in mapping:
            raise RedactionError(f"--redact: {key!r} is given twice")
        mapping[key] = rule
    return profile_from_mapping("cli", mapping)


def cli_recipients(keys: list[str]) -> list[Recipient]:
    """The recipients of the ``--encrypt-to`` options: each a public key, or a file of them
    (one a line, as ``age -R`` reads it); ValueError (one line) for a bad one."""
    found: list[Recipient] = []
    for key in keys:
        try:
            found.append(parse_recipient(key))
            continue
        except ValueError:
            if not os.path.isfile(key):
                raise
        try:
            with open(key, encoding="utf-8", errors="replace") as f:
                text = f.read(1 << 20)
        except OSError as e:
            raise ValueError(f"cannot read {key}: {e.strerror}") from None
        try:
            found += read_recipients(text)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    return found


def _keygen(path: str | None) -> int:
    """Print (or write to the new file ``path``) a new age key pair, as an age identity file:
    comment lines saying where each half goes, then the secret key."""
    try:
        identity, recipient = keygen()
    except ExportError as e:
        print(f"error: {escape_controls(str(e))}", file=sys.stderr)
        return 1
    where = (
        "# The secret key below stays with the vendor (keep this file safe: restore"
        " --identity FILE decrypts with it); the public key goes into the app's"
        " BACKUP_MANAGER_RECIPIENTS, so that its backups are encrypted to it."
    )
    fingerprint = parse_recipient(recipient).fingerprint
    text = (
        f"# created: {_now()}\n{where}\n# public key: {recipient}\n"
        f"# fingerprint (a backup's page shows it): {fingerprint}\n{identity}\n"
    )
    if path is None:
        sys.stdout.write(text)
        return 0
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        print(f"error: cannot create {path}: {e.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    print(f"wrote the secret key to {path}: it stays with the vendor (restore --identity {path}).")
    print(f"public key, for the app's BACKUP_MANAGER_RECIPIENTS: {recipient}")
    print(f"its fingerprint, which a backup's page shows: {fingerprint}")
    return 0


def _run(job: Callable[[], T]) -> T | None:
    """``job()``, or None after a one-line error on stderr (control characters escaped: the
    message may name the customer's objects). Ctrl-C exits 130."""
    try:
        return job()
    except ExportError as e:
        print(f"error: {escape_controls(str(e))}", file=sys.stderr)
        return None
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


def _now() -> str:
    """Now in UTC as the manifests of the app's backups write it (``...T23:06:08.817092Z``)."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _restore(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from .engine.restore import restore  # here, not at the top: an export never loads it

    target = args.target or os.environ.get(args.target_env)
    if not target:
        parser.error(f"environment variable {args.target_env} is not set")
    result = _run(
        lambda: restore(args.file, target, as_superuser=args.as_superuser, identity=args.identity)
    )
    if result is None:
        return 1
    print(f"{result.tables} tables, {result.rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
