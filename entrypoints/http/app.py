"""``create_app``: the Litestar application around one engine, built by the container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide

from application.article_pipeline import ArticlePipeline
from application.health import HealthService
from application.job_service import JobService
from application.ports import EventBus
from application.registry import TaskRegistry
from application.schedules import ScheduleService
from entrypoints.container import Container
from entrypoints.engine_lifetime import import_task_modules, running_engine
from entrypoints.http import fast_path as jobs_fast_path
from entrypoints.http.auth import bearer_token_middleware
from entrypoints.http.content_type import require_json_body
from entrypoints.http.dashboard import dashboard_router
from entrypoints.http.docs import assets_router
from entrypoints.http.head import install as install_head
from entrypoints.http.jobs import JobController
from entrypoints.http.openapi import (
    ClosedStructSchemaPlugin,
    document_event_streams,
    document_optional_bodies,
    openapi_config,
)
from entrypoints.http.problems import exception_handlers
from entrypoints.http.projects import ProjectController
from entrypoints.http.request_metrics import RequestMetrics
from entrypoints.http.schedules import ScheduleController
from entrypoints.http.system import health, metrics, queues, ready, tasks
from entrypoints.http.workflows import WorkflowController
from entrypoints.settings import Settings
from entrypoints.version import VERSION


def create_app(container: Container | None = None, *, fast_path: bool = True) -> Litestar:
    """The HTTP service. Without a container, one is built from the ``GEEKBLOG_*`` environment.

    ``fast_path``: answer ``POST /jobs`` and ``GET /jobs/{id}`` in a lean ASGI middleware in front of their
    handlers (same answers, less CPU: see ``fast_path.py``); ``False`` leaves every request to the handlers."""
    if container is None:
        container = Container(settings=Settings.from_env())
    settings: Settings = container.settings()
    import_task_modules(settings)
    container.bus().add_listener(container.metrics().observe)
    container.metrics().know_tasks(definition.name for definition in container.registry())
    request_metrics = RequestMetrics(container.metrics())

    @asynccontextmanager
    async def run_engine(app: Litestar) -> AsyncIterator[None]:
        async with running_engine(container):
            yield

    app = Litestar(
        route_handlers=[
            JobController,
            WorkflowController,
            ProjectController,
            ScheduleController,
            health,
            ready,
            metrics,
            queues,
            tasks,
            dashboard_router(settings.api_token),
            assets_router(),
        ],
        dependencies=services(container),
        exception_handlers=exception_handlers(container.storage_errors()),
        before_request=require_json_body,
        before_send=[request_metrics.before_send],
        # Litestar runs these in this order, after routing: request metrics (outermost), authentication, then the
        # /jobs fast path.
        middleware=[
            request_metrics.middleware,
            *([bearer_token_middleware(settings.api_token)] if settings.api_token else []),
            *([jobs_fast_path.JobsFastPath] if fast_path else []),
        ],
        request_max_body_size=settings.max_body_bytes,
        lifespan=[run_engine],
        openapi_config=openapi_config(version=VERSION, token_configured=bool(settings.api_token)),
        plugins=[ClosedStructSchemaPlugin()],
        debug=settings.mode == "development",
        logging_config=None,
    )
    document_optional_bodies(app)
    document_event_streams(app)
    if fast_path:
        jobs_fast_path.check(app)
    install_head(app)  # HEAD wherever GET exists: the GET answer without its body
    return app


def services(container: Container) -> dict[str, Provide]:
    """The dependencies handlers declare by name (``Injected[...]``, see ``injection.py``): each one service,
    taken from the container when a request needs it, typed by the port or application service handlers use."""

    def job_service() -> JobService:
        return container.job_service()

    def event_bus() -> EventBus:
        return container.bus()

    def health_service() -> HealthService:
        return container.health()

    def task_registry() -> TaskRegistry:
        return container.registry()

    def article_pipeline() -> ArticlePipeline:
        return container.pipeline()

    def schedule_service() -> ScheduleService:
        return container.schedules()

    providers: dict[str, Callable[[], object]] = {
        "jobs": job_service,
        "bus": event_bus,
        "health_service": health_service,
        "registry": task_registry,
        "pipeline": article_pipeline,
        "schedules": schedule_service,
    }
    return {name: Provide(provider, sync_to_thread=False) for name, provider in providers.items()}
