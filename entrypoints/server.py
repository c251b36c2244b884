"""Running the service under uvicorn, with a clean start and a graceful stop."""

from __future__ import annotations

import asyncio
import resource
import sys

import uvicorn

from entrypoints.container import Container
from entrypoints.engine_lifetime import check_storage, storage_description
from entrypoints.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from entrypoints.http.connections import Limits, protocol_class
from entrypoints.http.hosts import guard_hosts
from entrypoints.logging_setup import configure_logging
from entrypoints.settings import Settings


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT: then stop taking jobs, give running ones ``shutdown_grace`` seconds,
    and leave the rest to recovery at the next start. Returns the process exit code."""
    from entrypoints.http.app import create_app

    configure_logging(settings.mode, settings.log_level)
    try:
        container = Container(settings=settings)
        app = create_app(container)
    except ImportError as exc:
        print(f"geekblog: GEEKBLOG_TASK_MODULES: cannot import {exc.name or exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = asyncio.run(check_storage(container))  # also migrates, once, before the service takes requests
    if problem:
        print(f"geekblog: {problem}", file=sys.stderr)
        return EXIT_FAILED
    problem = _ensure_file_descriptors(settings.max_connections)
    if problem:
        print(f"geekblog: {problem}", file=sys.stderr)
        return EXIT_USAGE
    where = storage_description(settings)
    print(
        f"GeekBlog Tasks: http://{settings.host}:{settings.port} ({where}), replica {settings.replica};"
        f"{'' if settings.run_jobs else ' runs no jobs (GEEKBLOG_RUN_JOBS=false: workers run them);'}"
        " API docs at /schema",
        flush=True,
    )
    config = uvicorn.Config(
        guard_hosts(app, settings),  # the Host header checked in front of everything (DNS rebinding)
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=settings.mode == "development",
        timeout_graceful_shutdown=max(int(settings.shutdown_grace), 1),
        lifespan="on",
        loop="uvloop",
        # uvicorn's httptools protocol with the head/body timeouts, head size cap and connection cap it lacks
        # (entrypoints/http/connections.py says why); it also does limit_concurrency's job (503 past the cap).
        http=protocol_class(
            Limits(
                max_connections=settings.max_connections,
                keepalive_timeout=settings.keepalive_timeout,
                header_timeout=settings.header_timeout,
                body_timeout=settings.body_timeout,
                max_header_bytes=settings.max_header_bytes,
            )
        ),
        timeout_keep_alive=settings.keepalive_timeout,  # type: ignore[arg-type]  # a float works (call_later)
        h11_max_incomplete_event_size=settings.max_header_bytes,  # only if someone switches to http="h11"
    )
    server = uvicorn.Server(config)
    server.run()
    return EXIT_OK if server.started else EXIT_FAILED


# File descriptors the process needs besides its connections: the database, its WAL, the lock, logs, the loop.
SPARE_FILE_DESCRIPTORS = 64


def _ensure_file_descriptors(max_connections: int) -> str | None:
    """Raise the soft RLIMIT_NOFILE to fit ``max_connections``, or say why it cannot be."""
    needed = max_connections + SPARE_FILE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"GEEKBLOG_MAX_CONNECTIONS={max_connections} needs {needed} file descriptors, but the hard limit "
            f"(ulimit -Hn) is {hard}: lower GEEKBLOG_MAX_CONNECTIONS or raise the limit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return None
