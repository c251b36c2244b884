"""The schedule service and its scheduler loop on the in-memory repository, with a fake clock: ticks fire
once each, downtime follows the missed-tick policy, pause/resume/change/run-now, code reconciliation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository, InMemoryScheduleStore
from application.engine import Engine, EngineSettings
from application.ports import JobFilter
from application.registry import TaskDefinition, TaskRegistry
from application.schedules import ScheduleExists, ScheduleService
from domain.errors import NotFound, UnknownTask
from domain.job import Job
from domain.schedule import GRACE_SECONDS, Schedule, iso_tick
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock


def build(repo: InMemoryJobRepository, clock: FakeClock) -> Engine:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="add", fn=lambda x, y: x + y))
    return Engine.assemble(
        repo=repo,
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=clock,
        ids=CountingIds(),
        settings=EngineSettings(max_concurrent_tasks=4),
        schedule_store=InMemoryScheduleStore(repo),
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000.0)


@pytest.fixture
def repo() -> InMemoryJobRepository:
    return InMemoryJobRepository()


@pytest.fixture
async def engine(repo: InMemoryJobRepository, clock: FakeClock) -> AsyncIterator[Engine]:
    built = build(repo, clock)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


def service(engine: Engine) -> ScheduleService:
    assert engine.schedules is not None
    return engine.schedules


async def jobs_of(engine: Engine, name: str) -> list[Job]:
    return list(reversed((await engine.jobs.list(JobFilter(schedule=name), limit=1000)).items))


async def at(engine: Engine, clock: FakeClock, when: float) -> list[Job]:
    """Move the clock to ``when``, let the scheduler fire what is due; every job of schedule ``s``."""
    clock.current = when
    await service(engine).next_pass()
    return await jobs_of(engine, "s")


EVERY_10 = Schedule(name="s", task="add", args=[1, 2], every=10.0)


class TestTicks:
    async def test_an_interval_fires_once_per_tick_and_its_job_runs(self, engine: Engine, clock: FakeClock) -> None:
        created = await service(engine).create(EVERY_10)
        assert created.next_due_at == 1_010.0  # one interval after it was set, as Celery beat
        assert await at(engine, clock, 1_009.0) == []
        jobs = await at(engine, clock, 1_010.2)
        assert [(job.options.schedule, job.options.tick) for job in jobs] == [("s", iso_tick(1_010.0))]
        assert len(await at(engine, clock, 1_015.0)) == 1
        assert len(await at(engine, clock, 1_015.0)) == 1  # the same instant again: nothing new
        jobs = await at(engine, clock, 1_020.0)
        assert [job.options.tick for job in jobs] == [iso_tick(1_010.0), iso_tick(1_020.0)]
        done = await engine.jobs.wait(jobs[0].id, timeout=10)
        assert done.state == JobState.SUCCESS and done.result == 3
        stored = await service(engine).get("s")
        assert stored.last_tick == 1_020.0 and stored.next_due_at == 1_030.0

    async def test_the_loop_sleeps_until_the_next_tick_without_being_woken(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        clock.current = 1_000.0
        await service(engine).create(Schedule(name="s", task="add", args=[1, 1], every=1.0))
        clock.current = 1_001.0  # due now: the loop's sleep (real time: at most 1 s) ends and it fires
        deadline = asyncio.get_running_loop().time() + 10
        while not await jobs_of(engine, "s"):
            assert asyncio.get_running_loop().time() < deadline, "the tick never fired"
            await asyncio.sleep(0.02)

    async def test_downtime_fires_only_the_latest_tick_with_skip(self, engine: Engine, clock: FakeClock) -> None:
        await service(engine).create(EVERY_10)
        jobs = await at(engine, clock, 1_045.0)  # ticks 1010 .. 1040 all due: one job, for 1040
        assert [job.options.tick for job in jobs] == [iso_tick(1_040.0)]
        assert (await service(engine).get("s")).next_due_at == 1_050.0

    async def test_skip_drops_a_tick_past_the_grace_and_run_once_catches_up_once(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        hourly = Schedule(name="s", task="add", args=[1, 2], cron="0 * * * *")
        await service(engine).create(hourly)
        await service(engine).create(Schedule(name="r", task="add", args=[1, 2], cron="0 * * * *", missed="run_once"))
        first = (await service(engine).get("s")).next_due_at
        assert first is not None
        late = first + 3 * 3600 + GRACE_SECONDS + 5  # down for three hours and a bit
        assert await at(engine, clock, late) == []
        caught_up = await jobs_of(engine, "r")
        assert [job.options.tick for job in caught_up] == [iso_tick(first + 3 * 3600)]
        assert (await service(engine).get("s")).next_due_at == first + 4 * 3600

    async def test_pause_and_resume(self, engine: Engine, clock: FakeClock) -> None:
        await service(engine).create(EVERY_10)
        paused = await service(engine).pause("s")
        assert not paused.enabled and paused.next_due_at is None
        assert await at(engine, clock, 1_100.0) == []
        resumed = await service(engine).resume("s")
        assert resumed.enabled and resumed.next_due_at == 1_110.0  # the ticks while paused do not run
        assert len(await at(engine, clock, 1_110.0)) == 1

    async def test_a_change_applies_from_the_next_tick(self, engine: Engine, clock: FakeClock) -> None:
        await service(engine).create(EVERY_10)
        await at(engine, clock, 1_010.0)
        changed = await service(engine).update("s", args=[5, 5])
        assert changed.next_due_at == 1_020.0  # same timing: same next tick
        retimed = await service(engine).update("s", every=60.0)
        assert retimed.next_due_at == 1_070.0 and retimed.cron is None
        jobs = await at(engine, clock, 1_070.0)
        assert [job.args for job in jobs] == [[1, 2], [5, 5]]
        recron = await service(engine).update("s", cron="*/5 * * * *")
        assert recron.every is None and recron.next_due_at == 1_200.0

    async def test_run_now_adds_a_job_and_leaves_the_ticks_alone(self, engine: Engine, clock: FakeClock) -> None:
        await service(engine).create(EVERY_10)
        clock.current = 1_003.5
        job = await service(engine).run_now("s")
        assert job.options.schedule == "s" and job.options.tick == iso_tick(1_003.5)
        assert (await service(engine).get("s")).next_due_at == 1_010.0
        assert [j.id for j in await jobs_of(engine, "s")] == [job.id]

    async def test_delete_stops_the_ticks(self, engine: Engine, clock: FakeClock) -> None:
        await service(engine).create(EVERY_10)
        await service(engine).delete("s")
        assert await at(engine, clock, 1_050.0) == []
        with pytest.raises(NotFound):
            await service(engine).delete("s")

    async def test_misuse_is_refused(self, engine: Engine) -> None:
        await service(engine).create(EVERY_10)
        with pytest.raises(ScheduleExists):
            await service(engine).create(EVERY_10)
        with pytest.raises(UnknownTask):
            await service(engine).create(Schedule(name="x", task="nope", every=10.0))
        with pytest.raises(TypeError):
            await service(engine).create(Schedule(name="x", task="add", args=[1], every=10.0))
        with pytest.raises(ValueError, match="unknown schedule option"):
            await service(engine).create(Schedule(name="x", task="add", args=[1, 2], every=10.0, options={"x": 1}))
        with pytest.raises(ValueError, match="priority"):
            await service(engine).create(
                Schedule(name="x", task="add", args=[1, 2], every=10.0, options={"priority": "high"})
            )
        with pytest.raises(NotFound):
            await service(engine).get("x")

    async def test_options_reach_the_job_and_expires_counts_from_the_tick(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        await service(engine).create(
            Schedule(name="s", task="add", args=[1, 2], every=10.0, options={"queue": "q", "expires": 30})
        )
        jobs = await at(engine, clock, 1_010.0)
        assert jobs[0].options.queue == "q" and jobs[0].options.expires == 1_040.0

    async def test_a_concurrency_key_reaches_each_tick_job(self, engine: Engine, clock: FakeClock) -> None:
        options = {"concurrency_key": "nightly", "concurrency_limit": 1}
        await service(engine).create(Schedule(name="s", task="add", args=[1, 2], every=10.0, options=options))
        jobs = await at(engine, clock, 1_010.0)
        assert [job.concurrency for job in jobs] == [("nightly", 1)]

    @pytest.mark.parametrize(
        "options",
        [
            {"concurrency_limit": 2},
            {"concurrency_key": ""},
            {"concurrency_key": 7},
            {"concurrency_key": "k", "concurrency_limit": 0},
        ],
    )
    async def test_a_malformed_concurrency_key_is_refused(self, engine: Engine, options: dict[str, Any]) -> None:
        with pytest.raises(ValueError, match="concurrency"):
            await service(engine).create(Schedule(name="x", task="add", args=[1, 2], every=10.0, options=options))


async def test_two_engines_on_one_store_fire_each_tick_once(repo: InMemoryJobRepository, clock: FakeClock) -> None:
    first, second = build(repo, clock), build(repo, clock)
    await first.start()
    await second.start()
    try:
        await service(first).create(Schedule(name="s", task="add", args=[1, 2], every=1.0))
        for step in range(1, 30):
            clock.current = 1_000.0 + step
            await asyncio.gather(service(first).next_pass(), service(second).next_pass())
        ticks = [job.options.tick for job in await jobs_of(first, "s")]
        assert ticks == [iso_tick(1_000.0 + step) for step in range(1, 30)]
    finally:
        await first.stop()
        await second.stop()


async def test_declared_schedules_are_reconciled_and_logged(
    repo: InMemoryJobRepository, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="application.schedules")
    engine = build(repo, clock)
    service(engine).declared = [EVERY_10, Schedule(name="old", task="add", args=[0, 0], cron="0 3 * * *")]
    await engine.start()
    try:
        await service(engine).create(Schedule(name="api", task="add", args=[2, 2], every=30.0))
        await service(engine).pause("s")
    finally:
        await engine.stop()
    again = build(repo, clock)
    service(again).declared = [
        Schedule(name="s", task="add", args=[1, 2], every=20.0),
        Schedule(name="new", task="add", args=[3, 3], cron="*/5 * * * *", timezone="Europe/Paris"),
    ]
    caplog.clear()
    await again.start()
    try:
        names = {s.name: s for s in await service(again).list_schedules()}
        assert sorted(names) == ["api", "new", "s"]
        assert names["s"].every == 20.0 and not names["s"].enabled  # changed, its pause kept
        messages = [record.getMessage() for record in caplog.records]
        assert "schedule 'new' added: cron '*/5 * * * *' (Europe/Paris), task add" in messages
        assert "schedule 's' changed: every 20s, task add" in messages
        assert "schedule 'old' removed: no longer declared" in messages
        report = await service(again).reconcile(service(again).declared or [])
        assert report.unchanged == ["s", "new"] and not report.added and not report.removed
    finally:
        await again.stop()


async def test_cron_ticks_fire_across_both_dst_changes_as_cron_does(engine: Engine, clock: FakeClock) -> None:
    paris = ZoneInfo("Europe/Paris")
    clock.current = datetime(2026, 3, 28, 23, 0, tzinfo=paris).timestamp()
    await service(engine).create(
        Schedule(name="s", task="add", args=[1, 2], cron="30 * * * *", timezone="Europe/Paris")
    )
    await service(engine).create(
        Schedule(name="d", task="add", args=[1, 2], cron="30 2 * * *", timezone="Europe/Paris")
    )
    end = datetime(2026, 3, 29, 4, 0, tzinfo=paris).timestamp()
    while (due := await next_due(engine)) < end:  # the clock goes from one tick to the next
        clock.current = due
        await service(engine).next_pass()
    assert [local(job) for job in await jobs_of(engine, "s")] == [
        "2026-03-28T23:30:00+01:00",
        "2026-03-29T00:30:00+01:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:30:00+02:00",  # 02:30 does not exist that night: one hour, one run, no double
    ]
    assert [local(job) for job in await jobs_of(engine, "d")] == ["2026-03-29T03:00:00+02:00"]  # after the gap

    await service(engine).delete("s")
    clock.current = datetime(2026, 10, 24, 12, 0, tzinfo=paris).timestamp()
    await service(engine).pause("d")
    await service(engine).resume("d")  # planned again from now
    for _ in range(2):
        due = (await service(engine).get("d")).next_due_at
        assert due is not None
        clock.current = due
        await service(engine).next_pass()
    ran = [local(job) for job in await jobs_of(engine, "d")][1:]
    assert ran == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]  # the repeated hour runs it once


async def next_due(engine: Engine) -> float:
    return min(s.next_due_at for s in await service(engine).list_schedules() if s.next_due_at is not None)


def local(job: Job) -> str:
    assert job.options.tick is not None
    moment = datetime.fromisoformat(job.options.tick.replace("Z", "+00:00"))
    return moment.astimezone(ZoneInfo("Europe/Paris")).isoformat()
