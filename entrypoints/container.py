"""The composition root: the one place that knows which concrete adapter serves each port."""

from __future__ import annotations

from dependency_injector import containers, providers

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.sqlite_job_repository import SqliteJobRepository
from adapters.system import SystemClock, UuidSource
from application.engine import Engine, EngineSettings
from entrypoints.compat.tasks import default_registry
from entrypoints.settings import Settings


class Container(containers.DeclarativeContainer):
    """Builds the engine from :class:`Settings`. Tests swap any adapter with ``container.repo.override(...)``."""

    settings = providers.Dependency(instance_of=Settings, default=Settings())

    registry = providers.Object(default_registry)
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidSource)
    bus = providers.Singleton(InProcessEventBus)
    metrics = providers.Singleton(PrometheusMetrics)
    runner = providers.Singleton(AsyncioRunner, threads=settings.provided.max_concurrent_tasks)
    repo = providers.Selector(
        settings.provided.persistence,
        sqlite=providers.Singleton(SqliteJobRepository, settings.provided.db_path),
        memory=providers.Singleton(InMemoryJobRepository),
    )
    engine_settings = providers.Singleton(
        EngineSettings,
        max_concurrent_tasks=settings.provided.max_concurrent_tasks,
        lease_seconds=settings.provided.lease_seconds,
    )
    engine = providers.Singleton(
        Engine,
        repo=repo,
        registry=registry,
        runner=runner,
        bus=bus,
        clock=clock,
        ids=ids,
        settings=engine_settings,
    )
