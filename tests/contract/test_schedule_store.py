"""The contract every schedule store passes (memory, SQLite, PostgreSQL): CRUD with a compare-and-set on the
revision, due schedules, and ticks fired by the job repository's commits exactly once, even concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory_job_repository import InMemoryJobRepository, InMemoryScheduleStore
from adapters.postgres import PostgresJobRepository, PostgresScheduleStore
from adapters.sqlite import SqliteJobRepository, SqliteScheduleStore
from application.ports import Commit, JobFilter, JobRepository
from application.ports.schedule_store import ScheduleStore, ScheduleTick
from domain.errors import Conflict
from domain.job import CallOptions, Job
from domain.schedule import Schedule
from domain.states import JobState
from tests.contract.conftest import REPOSITORIES, _new_repository


def store_for(repo: JobRepository) -> ScheduleStore:
    if isinstance(repo, InMemoryJobRepository):
        return InMemoryScheduleStore(repo)
    if isinstance(repo, SqliteJobRepository):
        return SqliteScheduleStore(repo)
    assert isinstance(repo, PostgresJobRepository)
    return PostgresScheduleStore(repo)


@pytest.fixture(params=REPOSITORIES)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[JobRepository, ScheduleStore]]:
    repo = await _new_repository(request.param, request, tmp_path)
    await repo.open()
    try:
        yield repo, store_for(repo)
    finally:
        await repo.close()


def schedule(name: str = "s", **changes: object) -> Schedule:
    fields: dict[str, object] = {
        "task": "add",
        "args": [1, 2],
        "kwargs": {"x": "ü"},
        "options": {"queue": "q"},
        "every": 10.0,
        "anchor": 100.0,
        "next_due_at": 110.0,
        "revision": "r0",
        "created_at": 100.0,
        "updated_at": 100.0,
    }
    fields.update(changes)
    return Schedule(name=name, **fields)  # type: ignore[arg-type]


def tick_job(job_id: str, name: str = "s", tick: float = 110.0) -> Job:
    return Job(
        id=job_id,
        task="add",
        due_at=tick,
        created_at=tick,
        options=CallOptions(schedule=name, tick=f"t{tick}"),
    )


def fire(job_id: str, *, revision: str | None = "r0", tick: float = 110.0, name: str = "s") -> Commit:
    return Commit(
        jobs=[tick_job(job_id, name, tick)],
        tick=ScheduleTick(
            schedule=name, tick=tick, job_id=job_id, revision=revision, next_due_at=tick + 10, new_revision=job_id
        ),
    )


class TestStoredSchedules:
    async def test_a_schedule_round_trips_and_names_are_unique(
        self, stores: tuple[JobRepository, ScheduleStore]
    ) -> None:
        _, store = stores
        original = schedule(cron="*/5 * * * *", every=None, timezone="Europe/Paris", missed="run_once", end_at=9e9)
        assert await store.add(original)
        assert await store.get("s") == original
        assert not await store.add(schedule(task="other"))
        assert (await store.get("s")) == original
        assert await store.get("nope") is None

    async def test_replace_is_a_compare_and_set_on_the_revision(
        self, stores: tuple[JobRepository, ScheduleStore]
    ) -> None:
        _, store = stores
        await store.add(schedule())
        assert not await store.replace(schedule(args=[9], revision="r2"), revision="stale")
        assert await store.replace(schedule(args=[9], revision="r1"), revision="r0")
        stored = await store.get("s")
        assert stored is not None and stored.args == [9] and stored.revision == "r1"
        assert not await store.replace(schedule(name="gone"), revision="r0")

    async def test_list_delete_and_due(self, stores: tuple[JobRepository, ScheduleStore]) -> None:
        _, store = stores
        await store.add(schedule("b", next_due_at=300.0))
        await store.add(schedule("a", next_due_at=200.0))
        await store.add(schedule("c", next_due_at=None))  # paused
        assert [s.name for s in await store.list_schedules()] == ["a", "b", "c"]
        assert await store.next_schedule_due() == 200.0
        assert [s.name for s in await store.due_schedules(250.0, 10)] == ["a"]
        assert [s.name for s in await store.due_schedules(1000.0, 10)] == ["a", "b"]
        assert [s.name for s in await store.due_schedules(1000.0, 1)] == ["a"]
        assert await store.delete("a")
        assert not await store.delete("a")
        assert await store.next_schedule_due() == 300.0
        await store.delete("b")
        assert await store.next_schedule_due() is None


class TestFiringTicks:
    async def test_a_fire_stores_the_job_and_advances_the_schedule_together(
        self, stores: tuple[JobRepository, ScheduleStore]
    ) -> None:
        repo, store = stores
        await store.add(schedule())
        await repo.commit(fire("j1"))
        job = await repo.get("j1")
        assert job is not None and job.options.schedule == "s"
        stored = await store.get("s")
        assert stored is not None
        assert (stored.next_due_at, stored.revision, stored.last_tick) == (120.0, "j1", 110.0)
        assert [j.id for j in (await repo.list_jobs(JobFilter(schedule="s"), limit=10)).items] == ["j1"]
        assert (await repo.list_jobs(JobFilter(schedule="other"), limit=10)).items == []

    async def test_a_stale_revision_stores_nothing(self, stores: tuple[JobRepository, ScheduleStore]) -> None:
        repo, store = stores
        await store.add(schedule())
        await repo.commit(fire("j1"))
        with pytest.raises(Conflict):
            await repo.commit(fire("j2", tick=120.0))  # planned on r0, which j1's fire moved on
        assert await repo.get("j2") is None
        stored = await store.get("s")
        assert stored is not None and stored.next_due_at == 120.0

    async def test_a_tick_fires_once_even_without_an_advance(self, stores: tuple[JobRepository, ScheduleStore]) -> None:
        repo, store = stores
        await store.add(schedule())
        await repo.commit(fire("run1", revision=None, tick=105.5))
        with pytest.raises(Conflict):
            await repo.commit(fire("run2", revision=None, tick=105.5))
        assert await repo.get("run2") is None
        stored = await store.get("s")
        assert stored is not None and stored.revision == "r0"  # a run on request moves nothing

    async def test_a_fire_for_a_deleted_schedule_is_refused(self, stores: tuple[JobRepository, ScheduleStore]) -> None:
        repo, store = stores
        await store.add(schedule())
        await store.delete("s")
        with pytest.raises(Conflict):
            await repo.commit(fire("j1"))
        assert await repo.get("j1") is None

    async def test_concurrent_fires_of_one_tick_store_one_job(
        self, stores: tuple[JobRepository, ScheduleStore]
    ) -> None:
        repo, store = stores
        await store.add(schedule())
        outcomes = await asyncio.gather(*(repo.commit(fire(f"j{i}")) for i in range(8)), return_exceptions=True)
        assert sum(outcome is None for outcome in outcomes) == 1
        assert all(isinstance(outcome, Conflict) for outcome in outcomes if outcome is not None)
        assert len((await repo.list_jobs(JobFilter(schedule="s"), limit=20)).items) == 1

    async def test_fires_of_several_schedules_in_one_batch_each_land(
        self, stores: tuple[JobRepository, ScheduleStore]
    ) -> None:
        repo, store = stores
        for i in range(5):
            await store.add(schedule(f"s{i}"))
        await asyncio.gather(*(repo.commit(fire(f"j{i}", name=f"s{i}")) for i in range(5)))
        for i in range(5):
            stored = await store.get(f"s{i}")
            assert stored is not None and stored.revision == f"j{i}"
            assert [j.id for j in (await repo.list_jobs(JobFilter(schedule=f"s{i}"), limit=5)).items] == [f"j{i}"]


async def test_two_engines_on_one_postgres_database_never_double_a_tick(postgres_url: str) -> None:
    """Two repositories (two writers, two connections) race to fire the same ticks: each lands once."""
    from tests.support.postgres import empty_tables

    await empty_tables(postgres_url)
    first, second = PostgresJobRepository(postgres_url), PostgresJobRepository(postgres_url)
    await first.open()
    await second.open()
    try:
        store = PostgresScheduleStore(first)
        await store.add(schedule())
        won = 0
        for round_ in range(20):
            tick = 110.0 + 10 * round_
            current = await store.get("s")
            assert current is not None and current.next_due_at == tick
            attempts = [
                repo.commit(fire(f"{side}{round_}", revision=current.revision, tick=tick))
                for side, repo in (("a", first), ("b", second))
            ]
            outcomes = await asyncio.gather(*attempts, return_exceptions=True)
            assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"], outcomes
            won += 1
        jobs = (await first.list_jobs(JobFilter(schedule="s"), limit=100)).items
        assert len(jobs) == won == 20
    finally:
        await first.close()
        await second.close()


async def test_purge_drops_the_tick_records_of_purged_jobs_only(stores: tuple[JobRepository, ScheduleStore]) -> None:
    repo, store = stores
    await store.add(schedule())
    await repo.commit(fire("old", revision=None, tick=110.0))
    await repo.commit(fire("kept", revision=None, tick=120.0))
    old = await repo.get("old")
    assert old is not None
    await repo.commit(Commit(jobs=[old.moved_to(JobState.STARTED).succeeded(1, now=150.0)]))
    assert await repo.purge(200.0) == 1
    assert [j.id for j in (await repo.list_jobs(JobFilter(schedule="s"), limit=5)).items] == ["kept"]
    await repo.commit(fire("again", revision=None, tick=110.0))  # its record went with its job
    with pytest.raises(Conflict):
        await repo.commit(fire("twice", revision=None, tick=120.0))  # a kept job keeps its record
