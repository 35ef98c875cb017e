"""One export to S3-compatible storage as a worker makes it: the file built and checked in a
work directory, then uploaded in parts with their SHA-256 (:meth:`.storage.Storage.put`), for
bench.py's "to S3" row against the same export to a local disk.

    python bench/to_s3.py --source URL --format FMT --url s3://bucket/name --endpoint URL
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from flask_backup_manager.engine import export
from flask_backup_manager.state import storage_from_url


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--format", required=True)
    ap.add_argument("--url", required=True, help="s3://bucket/prefix/name: where the file goes")
    ap.add_argument("--endpoint", required=True, help="the S3 API's endpoint URL")
    ap.add_argument("--no-verify", action="store_true")
    args = ap.parse_args()
    where, _, name = args.url.rpartition("/")
    work = Path(tempfile.mkdtemp(prefix="fbm-bench-s3-"))
    storage = storage_from_url(where, {"endpoint_url": args.endpoint}, work)
    path = storage.export_path(name)
    result = export(args.source, args.format, path, verify=not args.no_verify)
    storage.put(path, name, sha256=result.sha256, size=result.size)
    work.rmdir()  # put removed the file: nothing else may be left
    return 0


if __name__ == "__main__":
    sys.exit(main())
