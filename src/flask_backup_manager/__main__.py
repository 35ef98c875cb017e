"""``python -m flask_backup_manager export --source URL --format FMT --output PATH``."""

from __future__ import annotations

import argparse
import sys

from .engine import FORMATS, ExportError, export


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flask_backup_manager")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="copy a database into a backup file")
    p.add_argument(
        "--source", required=True, help="SQLAlchemy URL: postgresql://... or sqlite:///path"
    )
    p.add_argument("--format", required=True, choices=list(FORMATS))
    p.add_argument("--output", required=True, help="the file to write")
    p.add_argument("--include", nargs="+", metavar="TABLE", help="copy only these tables")
    p.add_argument("--exclude", nargs="+", metavar="TABLE", help="leave these tables out")
    args = parser.parse_args(argv)
    try:
        result = export(
            args.source, args.format, args.output, include=args.include, exclude=args.exclude
        )
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(
        f"{result.path}: {result.tables} tables, {result.rows} rows, {result.size} bytes, "
        f"sha256 {result.sha256}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
