"""Running the service under uvicorn, with a clean start and a graceful stop."""

from __future__ import annotations

import sys

import uvicorn

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
    )
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else 1
