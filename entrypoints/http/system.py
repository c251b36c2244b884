"""Health, readiness, metrics and the list of registered tasks."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.di import NamedDependency

from application.engine import Engine
from application.ports.metrics import Metrics
from entrypoints.http.openapi import NOT_READY, problems
from entrypoints.http.schemas import Health, TaskOut


@get("/health", tags=["system"], summary="Liveness", sync_to_thread=False, security=[{}])
def health() -> Health:
    """200 while the process is alive (no authentication needed)."""
    return Health(status="ok")


@get("/ready", tags=["system"], summary="Readiness", responses={**problems(), 503: NOT_READY})
async def ready(engine: NamedDependency[Engine]) -> Response[Health]:
    """200 when the database answers and the dispatcher runs; 503 otherwise."""
    if not engine.started:
        return Response(Health(status="unavailable", detail="the engine is not running"), status_code=503)
    try:
        await engine.repo.get("readiness-probe")
    except Exception as exc:
        return Response(Health(status="unavailable", detail=f"database: {exc}"), status_code=503)
    return Response(Health(status="ok"), status_code=200)


@get("/metrics", tags=["system"], summary="Prometheus metrics", media_type=MediaType.TEXT, responses=problems(503))
async def metrics(engine: NamedDependency[Engine], metrics: NamedDependency[Metrics]) -> Response[str]:
    text = metrics.render(
        running=engine.dispatcher.active_jobs,
        states=await engine.repo.count_by_state(),
        stuck_threads=engine.runner.stuck,
    )
    return Response(text, media_type="text/plain; version=0.0.4")  # Litestar adds "; charset=utf-8"


@get("/tasks", tags=["tasks"], summary="List registered tasks", sync_to_thread=False, responses=problems())
def tasks(engine: NamedDependency[Engine]) -> list[TaskOut]:
    """Every task this service can run: only these names are ever accepted."""
    return [TaskOut.of(definition) for definition in engine.registry]
