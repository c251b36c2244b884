"""Rate limits in the dispatcher, on a controllable clock: a limited job waits queued (it does not fail), the
dispatcher's next wake-up is when the limit allows its start, and it does not claim again meanwhile (no busy
loop). Also Celery's ``rate_limit`` syntax (``celery.utils.time.rate``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.engine import Engine, EngineSettings
from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Signature
from domain.job import Job
from domain.queues import rate_interval
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock
from tests.unit.test_dispatcher_queues import until


class CountingRepository(InMemoryJobRepository):
    """Counts claims, to show the dispatcher does not poll while a limited job waits."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0

    async def claim(self, **kwargs: Any) -> list[Job]:
        self.claims += 1
        return await super().claim(**kwargs)


RAN: list[str] = []


def mail(name: str) -> str:
    RAN.append(name)
    return name


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(clock: FakeClock) -> AsyncIterator[Engine]:
    RAN.clear()
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="mail", fn=mail, rate_limit="2/m"))
    registry.register(TaskDefinition(name="free", fn=mail))
    built = Engine.assemble(
        repo=CountingRepository(),
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=clock,
        ids=CountingIds(),
        settings=EngineSettings(max_concurrent_tasks=4),
    )
    await built.start()
    yield built
    await built.stop(grace=5)


class TestRateLimitedDispatch:
    async def test_limited_jobs_wait_queued_and_start_when_the_limit_allows(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        start = clock.now()
        jobs = [(await engine.jobs.submit(Signature(task="mail", args=[f"m{i}"]))).id for i in range(3)]
        free = (await engine.jobs.submit(Signature(task="free", args=["free"]))).id
        await engine.jobs.wait(jobs[0], timeout=5)
        await engine.jobs.wait(free, timeout=5)
        await until(lambda: engine.dispatcher.next_due == start + 30, "the next wake-up is the next allowed start")
        repo = engine.repo
        assert isinstance(repo, CountingRepository)
        claims = repo.claims
        for _ in range(200):  # the loop gets every chance to run: it must not claim while nothing may start
            await asyncio.sleep(0)
        assert repo.claims == claims, "no busy loop while the limited job waits"
        waiting = await repo.get(jobs[1])
        assert waiting is not None and waiting.state == JobState.PENDING and waiting.options.rate_limit == "2/m"

        clock.advance(30)  # what the dispatcher's timer waits for; its sleep is in real time, so wake it
        engine.dispatcher.wake()
        await engine.jobs.wait(jobs[1], timeout=5)
        await until(lambda: engine.dispatcher.next_due == start + 60, "the third waits for its turn")
        third = await repo.get(jobs[2])
        assert third is not None and third.state == JobState.PENDING
        clock.advance(30)
        engine.dispatcher.wake()
        await engine.jobs.wait(jobs[2], timeout=5)
        assert RAN == ["m0", "free", "m1", "m2"] or RAN == ["free", "m0", "m1", "m2"]
        started = [(await repo.get(job_id)) for job_id in jobs]
        assert [job.started_at for job in started if job is not None] == [start, start + 30, start + 60]


class TestRateLimitSyntax:
    @pytest.mark.parametrize(
        ("rate", "interval"),
        [
            ("10/s", 0.1),
            ("10/m", 6.0),
            ("10/h", 360.0),
            ("10", 0.1),
            (10, 0.1),
            (0.5, 2.0),
            ("0.5/s", 2.0),
            (" 100 / m ", 0.6),
            ("1e3/s", 0.001),
            ("0/m", None),
            (0, None),
            (None, None),
        ],
    )
    def test_celerys_forms(self, rate: object, interval: float | None) -> None:
        assert rate_interval(rate) == (None if interval is None else pytest.approx(interval))

    @pytest.mark.parametrize("rate", ["10/d", "ten/m", "", "/m", "-1/m", "1/m/s", "nan", "inf/s", "1e-9/h"])
    def test_malformed_ones_are_a_value_error(self, rate: str) -> None:
        with pytest.raises(ValueError, match="rate"):
            rate_interval(rate)

    @pytest.mark.parametrize("rate", [True, [10], object()])
    def test_other_types_are_a_type_error(self, rate: object) -> None:
        with pytest.raises(TypeError, match="rate_limit"):
            rate_interval(rate)

    def test_a_task_definition_refuses_a_malformed_one(self) -> None:
        with pytest.raises(ValueError, match="rate_limit"):
            TaskDefinition(name="bad", fn=mail, rate_limit="10/week")
