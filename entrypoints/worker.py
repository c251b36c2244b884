"""``geekblog worker``: the engine without HTTP, as Celery users run workers apart from the web process.

Several workers (and ``geekblog serve`` processes) share the jobs of one PostgreSQL database. A SQLite file
takes one engine only (its lock file), so there a worker runs only when no other engine has the file, and is
then that file's one engine."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from application.ports.storage import StorageLocked, StorageUnavailable
from entrypoints.container import Container
from entrypoints.engine_lifetime import check_storage, import_task_modules, running_engine, storage_description
from entrypoints.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from entrypoints.logging_setup import configure_logging
from entrypoints.settings import Settings

log = logging.getLogger("geekblog.worker")

SQLITE_LOCKED_HINT = (
    "; a SQLite file takes one engine: to run workers beside `geekblog serve` or other workers, share a"
    " PostgreSQL database (GEEKBLOG_DATABASE_URL)"
)


def work(settings: Settings) -> int:
    """Run the engine until SIGTERM/SIGINT: then stop taking jobs, give running ones ``shutdown_grace``
    seconds, and leave the rest to recovery (as ``geekblog serve`` does). Returns the process exit code."""
    configure_logging(settings.mode, settings.log_level)
    if settings.persistence == "memory":
        print(
            "geekblog: a worker needs a database other processes can fill: set GEEKBLOG_DATABASE_URL"
            " (or GEEKBLOG_DB_PATH), not GEEKBLOG_PERSISTENCE=memory",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not settings.run_jobs:
        print(
            "geekblog: a worker runs jobs: unset GEEKBLOG_RUN_JOBS (false is for processes that only submit)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        container = Container(settings=settings)
        import_task_modules(settings)
    except ImportError as exc:
        print(f"geekblog: GEEKBLOG_TASK_MODULES: cannot import {exc.name or exc}", file=sys.stderr)
        return EXIT_USAGE
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_work(container))


async def _work(container: Container) -> int:
    settings: Settings = container.settings()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for number in signals:  # from here on a signal asks for the graceful stop, even during the start
        loop.add_signal_handler(number, stopping.set)
    try:
        problem = await check_storage(container, when_locked=SQLITE_LOCKED_HINT)
        if problem:
            print(f"geekblog: {problem}", file=sys.stderr)
            return EXIT_FAILED
        try:
            async with running_engine(container):
                print(
                    f"GeekBlog Tasks worker: replica {settings.replica}, {storage_description(settings)},"
                    f" concurrency {settings.max_concurrent_tasks}, queues {settings.queues or 'all'};"
                    " SIGTERM or Ctrl-C stops it"
                    f" (running jobs get {settings.shutdown_grace:g} s)",
                    flush=True,
                )
                await stopping.wait()
                log.info("stopping: no new jobs; running ones get %g s", settings.shutdown_grace)
        except StorageLocked as exc:  # another engine took the SQLite file since the check
            print(f"geekblog: {exc}{SQLITE_LOCKED_HINT}", file=sys.stderr)
            return EXIT_FAILED
        except StorageUnavailable as exc:
            print(f"geekblog: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:
            print(f"geekblog: cannot use {storage_description(settings)}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_FAILED
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
    return EXIT_OK
