"""Handlers get their one service from the container: a test overrides it there and the HTTP API uses it."""

from __future__ import annotations

from dataclasses import dataclass

from dependency_injector import providers
from litestar.testing import AsyncTestClient

from application.health import Readiness
from domain.canvas import Signature
from domain.job import Job
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings


@dataclass
class FixedHealth:
    """A health service that says what the test wants."""

    problem: str | None
    text: str = "geekblog_test 1\n"
    replica: str = "fixed-1"

    async def readiness(self) -> Readiness:
        return Readiness(
            problem=self.problem, replica=self.replica, storage="memory", running_here=0, shared_queue=None
        )

    async def metrics_text(self) -> str:
        return self.text


def memory_container() -> Container:
    return Container(settings=Settings(persistence="memory", shutdown_grace=0.5))


class TestOverridingServices:
    async def test_ready_and_metrics_read_the_health_service_of_the_container(self) -> None:
        container = memory_container()
        container.health.override(providers.Object(FixedHealth(problem="database: gone")))
        async with AsyncTestClient(create_app(container)) as client:
            response = await client.get("/ready")
            assert response.status_code == 503
            assert response.json() == {
                "status": "unavailable",
                "detail": "database: gone",
                "replica": "fixed-1",
                "storage": "memory",
                "shared_queue": None,
                "running_here": 0,
            }
            assert response.headers["x-geekblog-replica"] == "fixed-1"
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200 and metrics.text == "geekblog_test 1\n"
            assert metrics.headers["x-geekblog-replica"] == "fixed-1"

    async def test_jobs_are_submitted_through_the_job_service_of_the_container(self) -> None:
        container = memory_container()
        real = container.job_service()
        submitted: list[str] = []

        class RecordingJobs:
            """The real job service, recording what is submitted through it."""

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

            async def submit(self, signature: Signature, **options: object) -> Job:
                submitted.append(signature.task)
                return await real.submit(signature, **options)

        container.job_service.override(providers.Object(RecordingJobs()))
        async with AsyncTestClient(create_app(container)) as client:
            response = await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2]})
            assert response.status_code == 202
            assert (await client.get(f"/jobs/{response.json()['id']}")).status_code == 200
        assert submitted == ["geekblog.add"]

    async def test_the_real_health_service_reports_ready_once_the_engine_runs(self) -> None:
        container = memory_container()
        async with AsyncTestClient(create_app(container)) as client:
            assert (await client.get("/ready")).json()["status"] == "ok"
        assert await container.health().ready() == "the engine is not running"
