"""Running the service under uvicorn, with a clean start and a graceful stop."""

from __future__ import annotations

import asyncio
import sys

import uvicorn

from adapters.sqlite_job_repository import SqliteJobRepository, StorageError
from entrypoints.container import Container
from entrypoints.logging_setup import configure_logging
from entrypoints.settings import Settings


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT: then stop taking jobs, give running ones ``shutdown_grace`` seconds,
    and leave the rest to recovery at the next start. Returns the process exit code."""
    from entrypoints.http.app import create_app

    configure_logging(settings.mode)
    try:
        app = create_app(Container(settings=settings))
    except ImportError as exc:
        print(f"geekblog: GEEKBLOG_TASK_MODULES: cannot import {exc.name or exc}", file=sys.stderr)
        return 2
    if settings.persistence == "sqlite":
        problem = asyncio.run(_check_storage(settings))
        if problem:
            print(f"geekblog: {problem}", file=sys.stderr)
            return 1
    where = f"SQLite at {settings.db_path}" if settings.persistence == "sqlite" else "in memory (nothing durable)"
    print(f"GeekBlog Tasks: http://{settings.host}:{settings.port} ({where}); API docs at /schema", flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.mode == "development",
        timeout_graceful_shutdown=max(int(settings.shutdown_grace), 1),
        lifespan="on",
        loop="uvloop",
        http="httptools",
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1


async def _check_storage(settings: Settings) -> str | None:
    """Open and close the database once, so a bad path or file stops the start with one line."""
    repo = SqliteJobRepository(settings.db_path)
    try:
        await repo.open()
    except StorageError as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot use {settings.db_path}: {exc.strerror or exc}"
    await repo.close()
    return None
