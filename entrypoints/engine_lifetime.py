"""What every process that runs the engine does around it, written once for ``geekblog serve`` (the HTTP
app's lifespan) and ``geekblog worker`` (no HTTP): import the task modules, check the storage before
starting, and start the engine with the Celery-style calls and the article pipeline bound to it, then stop
it with ``GEEKBLOG_SHUTDOWN_GRACE`` for the jobs still running."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from application.engine import Engine
from application.ports.storage import StorageLocked, StorageUnavailable
from entrypoints import article_runtime
from entrypoints.compat import binding
from entrypoints.compat.app import current_app
from entrypoints.compat.beat import schedules_from_beat
from entrypoints.container import Container
from entrypoints.settings import Settings, redacted_url

BUILTIN_TASK_MODULES = ("entrypoints.builtin_tasks", "entrypoints.article_tasks")


def import_task_modules(settings: Settings) -> None:
    """Register the built-in tasks and those of ``GEEKBLOG_TASK_MODULES`` (``ImportError`` if one is missing)."""
    for module in (*BUILTIN_TASK_MODULES, *settings.task_modules):
        importlib.import_module(module)


def storage_description(settings: Settings) -> str:
    """Where the jobs live, as the start-up line says it (a PostgreSQL URL without its password)."""
    if settings.persistence == "postgres" and settings.database_url:
        return f"PostgreSQL at {redacted_url(settings.database_url)}"
    if settings.persistence == "sqlite":
        return f"SQLite at {settings.db_path}"
    return "in memory (nothing durable)"


async def check_storage(container: Container, *, when_locked: str = "") -> str | None:
    """Open and close the database once (a repository configured as the engine's, not the engine's own),
    so a bad path or file stops the start with one line; it also migrates, once, before the engine starts.
    ``when_locked`` is added to the line when another engine holds the storage."""
    settings: Settings = container.settings()
    if settings.persistence == "memory":
        return None
    repo = container.storage_probe()
    try:
        await repo.open()
    except StorageLocked as exc:
        return f"{exc}{when_locked}"
    except StorageUnavailable as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot use {storage_description(settings)}: {exc.strerror or exc}"
    await repo.close()
    return None


def declare_schedules(engine: Engine, schedules: Mapping[str, Any] | None = None) -> None:
    """Give the engine the schedules declared in code (``schedules`` and ``current_app.conf.beat_schedule``,
    Celery beat's shape) to reconcile when it starts; nothing when neither was declared."""
    conf = current_app.conf
    if engine.schedules is None or (schedules is None and not conf.beat_declared):
        return
    entries = {**conf.beat_schedule, **(schedules or {})}
    engine.schedules.declared = schedules_from_beat(entries, timezone=conf.timezone)


@asynccontextmanager
async def running_engine(
    container: Container, *, grace: float | None = None, schedules: Mapping[str, Any] | None = None
) -> AsyncIterator[Engine]:
    """The container's engine, started, with Celery-style calls and the ``ai.*`` tasks using it; on the way
    out running jobs get ``grace`` seconds (``shutdown_grace`` unless given) and the rest is left to
    recovery at the next start. ``schedules``: see :func:`declare_schedules`."""
    settings: Settings = container.settings()
    engine = container.engine()
    declare_schedules(engine, schedules)
    pipeline = container.pipeline()
    await engine.start()
    binding.activate(engine, asyncio.get_running_loop())
    article_runtime.activate(pipeline)
    try:
        yield engine
    finally:
        article_runtime.deactivate(pipeline)
        binding.deactivate(engine)
        try:
            await engine.stop(settings.shutdown_grace if grace is None else grace)
        finally:
            await container.generator().close()
