"""The composition root: the one place that knows which concrete adapter serves each port."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dependency_injector import containers, providers

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository, InMemoryScheduleStore
from adapters.memory_project_repository import InMemoryProjectRepository
from adapters.no_peers import NoPeers
from adapters.offline_text_generator import OfflineTextGenerator
from adapters.prometheus_metrics import PrometheusMetrics
from adapters.sqlite import SqliteJobRepository, SqliteProjectRepository, SqliteScheduleStore
from adapters.sqlite import maintenance as sqlite_maintenance
from adapters.sqlite_errors import storage_failure as sqlite_storage_failure
from adapters.system import SystemClock, UuidSource
from application.article_pipeline import ArticlePipeline
from application.engine import (
    Engine,
    EngineSettings,
    new_dispatcher,
    new_job_service,
    new_maintenance,
    new_peers,
    new_schedule_service,
)
from application.health import HealthService
from application.ports import Clock, EventBus, IdSource, JobRepository
from application.ports.peers import PeerLink
from application.ports.project_repository import ProjectRepository
from application.ports.schedule_store import ScheduleStore
from application.ports.storage import StorageUnavailable, no_translation
from application.ports.text_generator import TextGenerator
from application.registry import TaskRegistry
from application.workflows import WorkflowEngine
from domain.limits import Limits
from entrypoints.compat import signals
from entrypoints.compat.tasks import default_registry
from entrypoints.compat.threads import ThreadBridge
from entrypoints.settings import Settings

if TYPE_CHECKING:
    from adapters.postgres import PostgresJobRepository


def engine_with_signals(**parts: Any) -> Engine:
    """The engine, sending Celery's engine-side task signals (``task_revoked`` ...) to this process's receivers."""
    engine = Engine(**parts)
    signals.watch(engine)
    return engine


def limited_workflows(
    repo: JobRepository,
    registry: TaskRegistry,
    clock: Clock,
    ids: IdSource,
    bus: EventBus,
    *,
    limits: Limits | None,
    settings: EngineSettings,
) -> WorkflowEngine:
    """The workflow engine, holding results and workflows to ``limits``; it checks workflow versions when
    other engines may share its storage."""
    workflows = WorkflowEngine(repo, registry, clock, ids, bus, shared_storage=not settings.exclusive_storage)
    if limits is not None:
        workflows.limits = limits
    return workflows


# PostgreSQL's adapter (asyncpg, ~50 ms of imports) is imported only when the settings choose it: a SQLite
# or in-memory engine starts without it.


def postgres_job_repository(
    database_url: str, *, pool_size: int, connect_timeout: float, command_timeout: float
) -> JobRepository:
    from adapters.postgres import PostgresJobRepository

    return PostgresJobRepository(
        database_url, pool_size=pool_size, connect_timeout=connect_timeout, command_timeout=command_timeout
    )


def postgres_project_repository(repo: PostgresJobRepository) -> ProjectRepository:
    from adapters.postgres import PostgresProjectRepository

    return PostgresProjectRepository(repo)


def postgres_schedule_store(repo: PostgresJobRepository) -> ScheduleStore:
    from adapters.postgres import PostgresScheduleStore

    return PostgresScheduleStore(repo)


def postgres_peer_link(repo: PostgresJobRepository) -> PeerLink:
    from adapters.postgres import PostgresPeerLink

    return PostgresPeerLink(repo)


def postgres_storage_errors() -> Callable[[BaseException], StorageUnavailable | None]:
    from adapters.postgres import storage_failure

    return storage_failure


def openai_generator(**options: Any) -> TextGenerator:
    """The OpenAI-compatible generator, imported only when configured (httpx costs ~75 ms at start-up)."""
    from adapters.openai_text_generator import OpenAICompatibleGenerator

    return OpenAICompatibleGenerator(**options)


class Container(containers.DeclarativeContainer):
    """Builds the engine from :class:`Settings`. Tests swap any adapter with ``container.repo.override(...)``."""

    settings = providers.Dependency(instance_of=Settings, default=Settings())

    registry = providers.Object(default_registry)
    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(UuidSource)
    bus = providers.Singleton(InProcessEventBus)
    metrics = providers.Singleton(
        PrometheusMetrics, replica=settings.provided.replica, storage=settings.provided.persistence
    )
    runner = providers.Singleton(AsyncioRunner, threads=settings.provided.max_concurrent_tasks)
    # A new repository configured from the settings; ``repo`` is the engine's one, ``storage_probe`` one the
    # server opens and closes before it starts, so a bad database stops it with one line.
    new_repo = providers.Selector(
        settings.provided.persistence,
        sqlite=providers.Factory(
            SqliteJobRepository,
            settings.provided.db_path,
            synchronous=settings.provided.synchronous,
            busy_timeout_ms=settings.provided.busy_timeout_ms,
            max_size_mb=settings.provided.max_db_mb,
        ),
        memory=providers.Factory(InMemoryJobRepository),
        postgres=providers.Factory(
            postgres_job_repository,
            settings.provided.database_url,
            pool_size=settings.provided.pg_pool_size,
            connect_timeout=settings.provided.pg_connect_timeout,
            command_timeout=settings.provided.pg_command_timeout,
        ),
    )
    repo = providers.Singleton(new_repo)
    storage_probe = providers.Factory(new_repo)
    # Maintenance on the SQLite file itself (``geekblog purge`` / ``backup``, also while serving); the
    # commands refuse PostgreSQL, whose own tools (pg_dump) and the engine's purge do that there.
    database_files = providers.Object(sqlite_maintenance)
    # Reads the errors the repository lets through (sqlite3's ...) as the application's storage errors.
    storage_errors = providers.Selector(
        settings.provided.persistence,
        sqlite=providers.Object(sqlite_storage_failure),
        memory=providers.Object(no_translation),
        postgres=providers.Callable(postgres_storage_errors),
    )
    engine_settings = providers.Singleton(
        EngineSettings,
        max_concurrent_tasks=settings.provided.max_concurrent_tasks,
        lease_seconds=settings.provided.lease_seconds,
        result_ttl=settings.provided.result_ttl,
        poll_seconds=settings.provided.poll_seconds,
        cancel_timeout=settings.provided.cancel_timeout,
        run_jobs=settings.provided.run_jobs,
        queues=settings.provided.queue_limits,
        # Only a SQLite file is this engine's alone (its lock file): on PostgreSQL another engine may hold
        # the leases found at start, so they are recovered only once they expire.
        exclusive_storage=providers.Callable(lambda s: s.persistence != "postgres", settings),
        # Expired leases (a dead engine's, on PostgreSQL) are recovered within a lease, a minute at most.
        maintenance_interval=providers.Callable(lambda s: min(60.0, s.lease_seconds), settings),
    )
    limits = providers.Singleton(
        Limits,
        max_result_bytes=settings.provided.max_result_bytes,
        max_step_args_bytes=settings.provided.max_step_args_bytes,
        max_workflow_bytes=settings.provided.max_workflow_bytes,
    )
    projects = providers.Selector(
        settings.provided.persistence,
        sqlite=providers.Singleton(SqliteProjectRepository, repo),
        memory=providers.Singleton(InMemoryProjectRepository),
        postgres=providers.Singleton(postgres_project_repository, repo),
    )
    generator = providers.Selector(
        providers.Callable(lambda s: "openai" if s.llm_base_url else "offline", settings),
        offline=providers.Singleton(OfflineTextGenerator, delay=settings.provided.offline_delay),
        openai=providers.Singleton(
            openai_generator,
            base_url=settings.provided.llm_base_url,
            model=settings.provided.llm_model,
            api_key=settings.provided.llm_api_key,
            timeout=settings.provided.llm_timeout,
            max_retries=settings.provided.llm_max_retries,
        ),
    )
    pipeline = providers.Singleton(
        ArticlePipeline, projects=projects, generator=generator, bus=bus, clock=clock, ids=ids, workflows=repo
    )
    # The engine's services, each overridable (``container.job_service.override(...)``); the engine only
    # starts and stops them.
    workflows = providers.Singleton(
        limited_workflows, repo, registry, clock, ids, bus, limits=limits, settings=engine_settings
    )
    dispatcher = providers.Singleton(
        new_dispatcher,
        repo=repo,
        runner=runner,
        registry=registry,
        workflows=workflows,
        clock=clock,
        bus=bus,
        ids=ids,
        settings=engine_settings,
    )
    maintenance = providers.Singleton(
        new_maintenance, repo=repo, dispatcher=dispatcher, clock=clock, settings=engine_settings
    )
    # What the engines of one storage tell each other: nothing for an engine alone on its file (or in
    # memory); LISTEN/NOTIFY on PostgreSQL, which other engines may share.
    peer_link = providers.Selector(
        settings.provided.persistence,
        sqlite=providers.Singleton(NoPeers),
        memory=providers.Singleton(NoPeers),
        postgres=providers.Singleton(postgres_peer_link, repo),
    )
    peers = providers.Singleton(
        new_peers, link=peer_link, dispatcher=dispatcher, bus=bus, repo=repo, clock=clock, settings=engine_settings
    )
    job_service = providers.Singleton(
        new_job_service,
        repo=repo,
        registry=registry,
        workflows=workflows,
        clock=clock,
        ids=ids,
        bus=bus,
        dispatcher=dispatcher,
        peers=peers,
    )
    # Periodic schedules live beside the jobs (their ticks are fired by the job repository's commits).
    schedule_store = providers.Selector(
        settings.provided.persistence,
        sqlite=providers.Singleton(SqliteScheduleStore, repo),
        memory=providers.Singleton(InMemoryScheduleStore, repo),
        postgres=providers.Singleton(postgres_schedule_store, repo),
    )
    schedules = providers.Singleton(
        new_schedule_service,
        store=schedule_store,
        jobs=job_service,
        registry=registry,
        clock=clock,
        ids=ids,
        settings=engine_settings,
        peers=peers,
    )
    # Celery-style calls from plain threads: every repository offers blocking reads and says itself whether
    # a thread may commit (SQLite yes; memory and PostgreSQL no: those commits go through the loop).
    # PostgreSQL's are its reader on a loop and thread of their own (asyncpg has no blocking API).
    thread_access = providers.Selector(
        settings.provided.persistence, sqlite=repo, memory=repo, postgres=repo.provided.blocking
    )
    thread_bridge = providers.Singleton(
        ThreadBridge, jobs=job_service, bus=bus, starter=dispatcher, access=thread_access
    )
    engine = providers.Singleton(
        engine_with_signals,
        repo=repo,
        registry=registry,
        runner=runner,
        bus=bus,
        workflows=workflows,
        dispatcher=dispatcher,
        maintenance=maintenance,
        jobs=job_service,
        settings=engine_settings,
        hooks=providers.List(thread_bridge),
        peers=peers,
        schedules=schedules,
    )
    # What /ready and /metrics read: the engine's state, the jobs running here, the storage's counts by state
    # (shared by every replica on one database), stuck threads; and which replica answers.
    health = providers.Singleton(
        HealthService,
        engine=engine,
        dispatcher=dispatcher,
        repo=repo,
        runner=runner,
        metrics=metrics,
        replica=settings.provided.replica,
        storage=settings.provided.persistence,
        queues=settings.provided.queue_limits,
        runs_jobs=settings.provided.run_jobs,
    )
