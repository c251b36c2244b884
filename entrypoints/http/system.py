"""Health, readiness, metrics and the list of registered tasks."""

from __future__ import annotations

from litestar import MediaType, Response, get
from litestar.datastructures import ResponseHeader

from application.health import HealthService
from application.registry import TaskRegistry
from entrypoints.http.injection import Injected
from entrypoints.http.openapi import NOT_READY, problems
from entrypoints.http.schemas import Health, QueueOut, Readiness, TaskOut

REPLICA_HEADER = "X-GeekBlog-Replica"
_REPLICA_DOC = [
    ResponseHeader(
        name=REPLICA_HEADER,
        documentation_only=True,
        description="The replica answering (GEEKBLOG_REPLICA), to tell the processes behind one address apart",
    )
]


@get("/health", tags=["system"], summary="Liveness", sync_to_thread=False, security=[{}])
def health() -> Health:
    """200 while the process is alive (no authentication needed)."""
    return Health(status="ok")


@get(
    "/ready",
    tags=["system"],
    summary="Readiness",
    responses={**problems(), 503: NOT_READY},
    response_headers=_REPLICA_DOC,
)
async def ready(health_service: Injected[HealthService]) -> Response[Readiness]:
    """200 when the database answers and the dispatcher runs; 503 otherwise. Says which replica answers, the
    queue of the storage all replicas share, and the jobs running in this replica."""
    report = await health_service.readiness()
    return Response(
        Readiness.of(report),
        status_code=200 if report.problem is None else 503,
        headers={REPLICA_HEADER: report.replica},
    )


@get(
    "/metrics",
    tags=["system"],
    summary="Prometheus metrics",
    media_type=MediaType.TEXT,
    responses=problems(503),
    response_headers=_REPLICA_DOC,
)
async def metrics(health_service: Injected[HealthService]) -> Response[str]:
    """``geekblog_replica_*`` are this replica's, ``geekblog_shared_*`` the storage's (the same on every replica)."""
    text = await health_service.metrics_text()
    return Response(  # Litestar adds "; charset=utf-8" to the media type
        text, media_type="text/plain; version=0.0.4", headers={REPLICA_HEADER: health_service.replica}
    )


@get("/queues", tags=["system"], summary="Named queues", responses=problems(503), response_headers=_REPLICA_DOC)
async def queues(health_service: Injected[HealthService]) -> Response[list[QueueOut]]:
    """Each named queue holding queued jobs or served by the replica answering: its depth (the same on
    every replica) and whether, and at most how many at once, this replica runs its jobs."""
    reports = await health_service.queues()
    body = [
        QueueOut(name=r.name, waiting=r.waiting, served_here=r.served_here, concurrency_here=r.concurrency_here)
        for r in reports
    ]
    return Response(body, headers={REPLICA_HEADER: health_service.replica})


@get("/tasks", tags=["tasks"], summary="List registered tasks", sync_to_thread=False, responses=problems())
def tasks(registry: Injected[TaskRegistry]) -> list[TaskOut]:
    """Every task this service can run: only these names are ever accepted."""
    return [TaskOut.of(definition) for definition in registry]
