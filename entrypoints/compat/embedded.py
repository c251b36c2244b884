"""``embedded_engine``: the engine inside the caller's own event loop, as an application embeds it."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

from application.engine import Engine
from entrypoints.container import Container
from entrypoints.engine_lifetime import running_engine
from entrypoints.settings import Settings


@asynccontextmanager
async def embedded_engine(
    db_path: str | None = None,
    task_modules: Iterable[str] = (),
    max_concurrent_tasks: int = 10,
    *,
    container: Container | None = None,
    database_url: str | None = None,
    run_jobs: bool = True,
    schedules: Mapping[str, Any] | None = None,
) -> AsyncIterator[Engine]:
    """Start an engine in the running loop: PostgreSQL at ``database_url`` if given, else SQLite at
    ``db_path``, or in memory when both are None.

    ``run_jobs=False`` (PostgreSQL only): this process submits jobs and reads and waits for their results,
    and ``geekblog worker`` processes (or services) on the same database run them, as a web application
    beside Celery workers; ``SettingsError`` on other storage.

    Imports ``task_modules`` so their tasks register; while the block runs, ``.delay()``,
    ``AsyncResult`` and the canvas calls use this engine. Leaving the block stops it.

    ``schedules``: periodic schedules in Celery's ``beat_schedule`` shape (``{"name": {"task": ...,
    "schedule": crontab(...) | seconds | timedelta, "args": ...}}``), with those of
    ``current_app.conf.beat_schedule``; reconciled with the stored ones at start (added, changed and
    removed ones are logged). TypeError/ValueError on a malformed entry, before anything starts.
    """
    for module in task_modules:
        importlib.import_module(module)
    persistence: Literal["sqlite", "memory", "postgres"] = "memory" if db_path is None else "sqlite"
    if database_url is not None:
        persistence = "postgres"
    if container is None:
        settings = Settings(
            db_path=db_path or "",
            database_url=database_url,
            persistence=persistence,
            max_concurrent_tasks=max_concurrent_tasks,
            run_jobs=run_jobs,
        )
        container = Container(settings=settings)
    async with running_engine(
        container, grace=0.0, schedules=schedules
    ) as engine:  # leaving the block stops it at once
        yield engine
