"""Schedules across restarts, with a fake clock: a new engine on the same SQLite file (and engines on one
PostgreSQL database) neither doubles a tick that was fired nor loses one that fell due while it was down."""

from __future__ import annotations

import asyncio
from pathlib import Path

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.postgres import PostgresJobRepository, PostgresScheduleStore
from adapters.sqlite import SqliteJobRepository, SqliteScheduleStore
from application.engine import Engine, EngineSettings
from application.ports import JobFilter, JobRepository
from application.ports.schedule_store import ScheduleStore
from application.registry import TaskDefinition, TaskRegistry
from application.schedules import ScheduleService
from domain.schedule import Schedule, iso_tick
from tests.support.postgres import empty_tables
from tests.unit.fakes import CountingIds, FakeClock


class _Ids(CountingIds):
    """Ids unique across the engines of one test (each engine counts from 1)."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self._prefix = prefix

    def new_id(self) -> str:
        return f"{self._prefix}-{super().new_id()}"


def engine_on(repo: JobRepository, store: ScheduleStore, clock: FakeClock, name: str, *, shared: bool) -> Engine:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="add", fn=lambda x, y: x + y))
    return Engine.assemble(
        repo=repo,
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=clock,
        ids=_Ids(name),
        settings=EngineSettings(exclusive_storage=not shared),
        schedule_store=store,
    )


def sqlite_engine(path: Path, clock: FakeClock, name: str) -> Engine:
    repo = SqliteJobRepository(path)
    return engine_on(repo, SqliteScheduleStore(repo), clock, name, shared=False)


def schedules(engine: Engine) -> ScheduleService:
    assert engine.schedules is not None
    return engine.schedules


async def ticks(engine: Engine) -> list[str | None]:
    page = await engine.jobs.list(JobFilter(schedule="s"), limit=1000)
    return sorted(job.options.tick for job in page.items if job.options.tick is not None)


async def test_restarts_neither_double_nor_lose_a_tick(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    clock = FakeClock(1_000.0)
    first = sqlite_engine(path, clock, "a")
    await first.start()
    try:
        await schedules(first).create(Schedule(name="s", task="add", args=[1, 2], every=10.0))
        clock.current = 1_010.0
        await schedules(first).next_pass()
        assert await ticks(first) == [iso_tick(1_010.0)]
    finally:
        await first.stop()

    clock.current = 1_010.5  # restarted within the same tick: it was fired, and is not fired again
    second = sqlite_engine(path, clock, "b")
    await second.start()
    try:
        await schedules(second).next_pass()
        assert await ticks(second) == [iso_tick(1_010.0)]
        clock.current = 1_020.0
        await schedules(second).next_pass()
        assert await ticks(second) == [iso_tick(1_010.0), iso_tick(1_020.0)]
    finally:
        await second.stop()

    clock.current = 1_031.0  # down while 1030 fell due (within the grace): the next start fires it
    third = sqlite_engine(path, clock, "c")
    await third.start()
    try:
        await schedules(third).next_pass()
        assert await ticks(third) == [iso_tick(1_010.0), iso_tick(1_020.0), iso_tick(1_030.0)]
        job = (await third.jobs.list(JobFilter(schedule="s"), limit=1)).items[0]
        assert (await third.jobs.wait(job.id, timeout=10)).result == 3
    finally:
        await third.stop()


async def test_a_stale_engine_loses_the_race_after_a_restart(tmp_path: Path) -> None:
    """An engine that planned a tick on what it read, while another stored it, stores nothing."""
    path = tmp_path / "tasks.db"
    clock = FakeClock(1_000.0)
    engine = sqlite_engine(path, clock, "a")
    await engine.start()
    try:
        await schedules(engine).create(Schedule(name="s", task="add", args=[1, 2], every=10.0))
        store = SqliteScheduleStore(engine.repo)  # type: ignore[arg-type]
        stale = await store.get("s")
        clock.current = 1_010.0
        await schedules(engine).next_pass()
        assert stale is not None
        assert await schedules(engine)._fire(stale, clock.now()) == 0  # planned on the old revision
        assert await ticks(engine) == [iso_tick(1_010.0)]
    finally:
        await engine.stop()


async def test_engines_on_one_postgres_database_fire_each_tick_once(postgres_url: str) -> None:
    await empty_tables(postgres_url)
    clock = FakeClock(1_000.0)
    engines = []
    for name in ("a", "b", "c"):
        repo = PostgresJobRepository(postgres_url)
        engines.append(engine_on(repo, PostgresScheduleStore(repo), clock, name, shared=True))
    for engine in engines:
        await engine.start()
    try:
        await schedules(engines[0]).create(Schedule(name="s", task="add", args=[1, 2], every=1.0))
        for step in range(1, 16):
            clock.current = 1_000.0 + step
            for engine in engines:
                schedules(engine).wake()
            await asyncio.gather(*(schedules(engine).next_pass() for engine in engines))
        assert await ticks(engines[0]) == [iso_tick(1_000.0 + step) for step in range(1, 16)]
        assert sum(schedules(engine).fired for engine in engines) == 15
    finally:
        for engine in engines:
            await engine.stop()


async def test_engines_starting_together_reconcile_the_same_declarations(postgres_url: str) -> None:
    await empty_tables(postgres_url)
    clock = FakeClock(1_000.0)
    declared = [
        Schedule(name="s", task="add", args=[1, 2], every=10.0),
        Schedule(name="n", task="add", args=[1, 2], cron="0 3 * * *"),
    ]
    engines = []
    for name in ("a", "b", "c"):
        repo = PostgresJobRepository(postgres_url)
        engine = engine_on(repo, PostgresScheduleStore(repo), clock, name, shared=True)
        schedules(engine).declared = declared
        engines.append(engine)
    await asyncio.gather(*(engine.start() for engine in engines))
    try:
        stored = await schedules(engines[0]).list_schedules()
        assert [s.name for s in stored] == ["n", "s"] and all(s.declared for s in stored)
        clock.current = 1_010.0
        await asyncio.gather(*(schedules(engine).next_pass() for engine in engines))
        assert await ticks(engines[0]) == [iso_tick(1_010.0)]
    finally:
        for engine in engines:
            await engine.stop()
