"""The health service on fakes: what ``/ready`` and ``/metrics`` read from the engine's parts, and which
replica they name."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from adapters.memory_job_repository import InMemoryJobRepository
from application.events import Event
from application.health import HealthService, Readiness, SharedQueue
from application.ports import Commit
from domain.job import CallOptions, Job
from domain.states import JobState


@dataclass
class FakeEngine:
    started: bool = True


@dataclass
class FakeDispatcher:
    active_jobs: int = 0


@dataclass
class FakeRunner:
    stuck: int = 0

    async def run(self, fn: Any, args: list[Any], kwargs: dict[str, Any], *, is_async: bool) -> Any:
        raise AssertionError("the health service runs no task")

    async def close(self) -> None:
        return None


@dataclass
class RecordingMetrics:
    rendered: list[dict[str, Any]] = field(default_factory=list)
    depths: list[dict[str, int] | None] = field(default_factory=list)

    def observe(self, event: Event) -> None:
        return None

    def observe_request(self, *, method: str, route: str, status: int, seconds: float | None) -> None:
        return None

    def render(
        self,
        *,
        running: int,
        states: dict[str, int],
        stuck_threads: int = 0,
        queue_depths: dict[str, int] | None = None,
    ) -> str:
        self.rendered.append({"running": running, "states": states, "stuck_threads": stuck_threads})
        self.depths.append(queue_depths)
        return "text"


class BrokenRepository(InMemoryJobRepository):
    async def get(self, job_id: str) -> Job | None:
        raise OSError("disk I/O error")

    async def count_by_state(self, states: Collection[str] | None = None) -> dict[str, int]:
        raise OSError("disk I/O error")


def job(job_id: str, state: JobState = JobState.PENDING) -> Job:
    return Job(id=job_id, task="t", due_at=0.0, created_at=0.0, state=state)


@dataclass
class Parts:
    engine: FakeEngine = field(default_factory=FakeEngine)
    dispatcher: FakeDispatcher = field(default_factory=FakeDispatcher)
    repo: InMemoryJobRepository = field(default_factory=InMemoryJobRepository)
    runner: FakeRunner = field(default_factory=FakeRunner)
    metrics: RecordingMetrics = field(default_factory=RecordingMetrics)

    def service(self) -> HealthService:
        return HealthService(
            engine=self.engine,
            dispatcher=self.dispatcher,
            repo=self.repo,
            runner=self.runner,
            metrics=self.metrics,
            replica="web-1",
            storage="postgres",
        )


class TestReady:
    async def test_ready_when_the_engine_runs_and_storage_answers(self) -> None:
        assert await Parts().service().ready() is None

    async def test_not_ready_while_the_engine_is_not_running(self) -> None:
        parts = Parts(engine=FakeEngine(started=False), repo=BrokenRepository())
        assert await parts.service().ready() == "the engine is not running"  # storage is not even read

    async def test_not_ready_when_storage_fails_with_its_reason(self) -> None:
        assert await Parts(repo=BrokenRepository()).service().ready() == "database: disk I/O error"

    async def test_the_report_names_the_replica_and_tells_the_shared_queue_from_the_jobs_running_here(self) -> None:
        parts = Parts(dispatcher=FakeDispatcher(active_jobs=1))
        states = [JobState.PENDING, JobState.RETRY, JobState.STARTED, JobState.STARTED, JobState.STARTED]
        await parts.repo.commit(Commit(jobs=[job(str(n), state) for n, state in enumerate(states)]))
        await parts.repo.commit(Commit(jobs=[job("done", JobState.SUCCESS)]))
        assert await parts.service().readiness() == Readiness(
            problem=None,
            replica="web-1",
            storage="postgres",
            running_here=1,  # this replica's: the dispatcher's own count
            shared_queue=SharedQueue(waiting=2, running=3),  # every replica's: the storage's counts
        )

    async def test_the_probe_counts_only_unfinished_jobs_never_every_finished_one_kept(self) -> None:
        asked: list[Collection[str] | None] = []

        class Recording(InMemoryJobRepository):
            async def count_by_state(self, states: Collection[str] | None = None) -> dict[str, int]:
                asked.append(states)
                return await super().count_by_state(states)

        assert await Parts(repo=Recording()).service().ready() is None
        assert asked == [{"PENDING", "RETRY", "STARTED"}]

    async def test_the_shared_queue_is_read_again_at_each_probe(self) -> None:
        parts = Parts()
        service = parts.service()
        assert (await service.readiness()).shared_queue == SharedQueue(waiting=0, running=0)
        await parts.repo.commit(Commit(jobs=[job("a")]))
        assert (await service.readiness()).shared_queue == SharedQueue(waiting=1, running=0)

    async def test_not_ready_reports_still_name_the_replica_without_a_shared_queue(self) -> None:
        stopped = await Parts(engine=FakeEngine(started=False)).service().readiness()
        broken = await Parts(repo=BrokenRepository()).service().readiness()
        for report, problem in ((stopped, "the engine is not running"), (broken, "database: disk I/O error")):
            assert (report.problem, report.replica, report.storage, report.shared_queue) == (
                problem,
                "web-1",
                "postgres",
                None,
            )


class TestMetrics:
    async def test_renders_running_jobs_counts_by_state_and_stuck_threads(self) -> None:
        parts = Parts(dispatcher=FakeDispatcher(active_jobs=2), runner=FakeRunner(stuck=1))
        await parts.repo.commit(
            Commit(
                jobs=[
                    Job(id="a", task="t", due_at=0.0, created_at=0.0),
                    Job(id="b", task="t", due_at=0.0, created_at=0.0, state=JobState.SUCCESS),
                    Job(id="c", task="t", due_at=0.0, created_at=0.0, state=JobState.SUCCESS),
                ]
            )
        )
        assert await parts.service().metrics_text() == "text"
        assert parts.metrics.rendered == [{"running": 2, "states": {"PENDING": 1, "SUCCESS": 2}, "stuck_threads": 1}]

    async def test_reads_the_counts_again_at_each_scrape(self) -> None:
        parts = Parts()
        service = parts.service()
        await service.metrics_text()
        await parts.repo.commit(Commit(jobs=[Job(id="a", task="t", due_at=0.0, created_at=0.0)]))
        parts.dispatcher.active_jobs = 1
        await service.metrics_text()
        assert [r["states"] for r in parts.metrics.rendered] == [{}, {"PENDING": 1}]
        assert [r["running"] for r in parts.metrics.rendered] == [0, 1]

    async def test_the_queues_this_replica_serves_are_shown_when_empty(self) -> None:
        parts = Parts()
        await parts.repo.commit(
            Commit(jobs=[Job(id="a", task="t", due_at=0.0, created_at=0.0, options=CallOptions(queue="ai"))])
        )
        await parts.service().metrics_text()  # every queue served: "default" at least
        serving = HealthService(
            engine=parts.engine,
            dispatcher=parts.dispatcher,
            repo=parts.repo,
            runner=parts.runner,
            metrics=parts.metrics,
            replica="web-1",
            storage="sqlite",
            queues={"reports": 2},
        )
        await serving.metrics_text()
        assert parts.metrics.depths == [{"ai": 1, "default": 0}, {"ai": 1, "reports": 0}]
