"""Health, readiness, metrics and the list of registered tasks."""

from __future__ import annotations

from litestar import MediaType, Response, get

from application.health import HealthService
from application.registry import TaskRegistry
from entrypoints.http.injection import Injected
from entrypoints.http.openapi import NOT_READY, problems
from entrypoints.http.schemas import Health, TaskOut


@get("/health", tags=["system"], summary="Liveness", sync_to_thread=False, security=[{}])
def health() -> Health:
    """200 while the process is alive (no authentication needed)."""
    return Health(status="ok")


@get("/ready", tags=["system"], summary="Readiness", responses={**problems(), 503: NOT_READY})
async def ready(health_service: Injected[HealthService]) -> Response[Health]:
    """200 when the database answers and the dispatcher runs; 503 otherwise."""
    problem = await health_service.ready()
    if problem is not None:
        return Response(Health(status="unavailable", detail=problem), status_code=503)
    return Response(Health(status="ok"), status_code=200)


@get("/metrics", tags=["system"], summary="Prometheus metrics", media_type=MediaType.TEXT, responses=problems(503))
async def metrics(health_service: Injected[HealthService]) -> Response[str]:
    text = await health_service.metrics_text()
    return Response(text, media_type="text/plain; version=0.0.4")  # Litestar adds "; charset=utf-8"


@get("/tasks", tags=["tasks"], summary="List registered tasks", sync_to_thread=False, responses=problems())
def tasks(registry: Injected[TaskRegistry]) -> list[TaskOut]:
    """Every task this service can run: only these names are ever accepted."""
    return [TaskOut.of(definition) for definition in registry]
