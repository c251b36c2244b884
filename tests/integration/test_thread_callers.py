"""Celery-style calls from threads that run no event loop (a plain thread, a sync task's worker thread).

On SQLite such a caller commits its job on its own thread (``commit_from_thread``) and waits on a
``threading.Event`` the loop sets on the terminal event: no round trip to the engine's loop. The
memory repository cannot be written from another thread, nor can PostgreSQL's (one writer per process),
so there the same calls go through the loop, and reads are the repository's blocking ones (PostgreSQL's
on a loop of their own); every behaviour here holds on all three.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

import application.job_service
from application.engine import Engine
from application.outcomes import revoked_error
from application.ports import Commit, Guard, JobFilter
from domain.canvas import Signature
from domain.errors import Conflict, NotFound
from domain.job import Job
from domain.states import JobState
from entrypoints.celery_compat import (
    AsyncResult,
    EngineStopped,
    ResultSet,
    UnknownResultError,
    chain,
    embedded_engine,
    states,
)
from entrypoints.compat import binding
from tests.integration import compat_tasks
from tests.integration.compat_tasks import RELEASE, add, blocker, boom, submits_from_thread
from tests.integration.conftest import Storage
from tests.support.postgres import fetch_blocking
from tests.support.storage import blocking_access
from tests.support.waiting import eventually, not_done_within

T = TypeVar("T")


async def off_loop(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that has no event loop, as a plain caller or a sync task would."""
    return await asyncio.to_thread(fn)


def no_loop_round_trips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any hop from a thread to the loop through JobService fail the test."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("a thread call went through the loop")

    monkeypatch.setattr(application.job_service.asyncio, "run_coroutine_threadsafe", refuse)


@pytest.mark.usefixtures("engine")
class TestSubmitFromAThread:
    async def test_delay_and_get_work_from_a_plain_thread(self) -> None:
        def call() -> Any:
            handle = add.delay(2, 3)
            assert isinstance(handle, AsyncResult)
            return handle.get(timeout=5)

        assert await off_loop(call) == 5

    async def test_a_sync_task_can_submit_and_wait_for_another_job(self) -> None:
        handle = await submits_from_thread.delay(41)
        assert await handle.get(timeout=10) == 42

    async def test_the_job_is_committed_when_delay_returns(self, engine: Engine, storage: Storage) -> None:
        def call() -> str:
            handle = add.apply_async((1, 1), countdown=60)  # stays queued: what is read is the commit
            assert isinstance(handle, AsyncResult)
            # another connection sees the row: it is in the database, not only in this process
            if storage.db_path is not None:
                with sqlite3.connect(storage.db_path) as other:
                    row = other.execute("SELECT state FROM jobs WHERE id = ?", (handle.id,)).fetchone()
                assert row == ("PENDING",)
            if storage.database_url is not None:
                rows = fetch_blocking(storage.database_url, "SELECT state FROM jobs WHERE id = $1", handle.id)
                assert [tuple(row) for row in rows] == [("PENDING",)]
            return handle.id

        job_id = await off_loop(call)
        assert (await engine.jobs.get(job_id)).state == JobState.PENDING

    async def test_many_threads_submitting_at_once_lose_nothing(self, engine: Engine) -> None:
        per_thread, threads = 60, 6

        def call(base: int) -> list[tuple[str, Any]]:
            handles = [add.delay(base, i) for i in range(per_thread)]
            return [(handle.id, handle.get(timeout=20)) for handle in handles]  # type: ignore[union-attr]

        batches = await asyncio.gather(*(off_loop(lambda b=b: call(b * 1000)) for b in range(threads)))
        ids = [job_id for batch in batches for job_id, _ in batch]
        assert len(set(ids)) == per_thread * threads
        for b, batch in enumerate(batches):
            assert [value for _, value in batch] == [b * 1000 + i for i in range(per_thread)]

    async def test_bad_calls_are_refused_on_the_calling_thread(self, engine: Engine) -> None:
        with pytest.raises(TypeError):
            await off_loop(lambda: add.delay(1))  # missing an argument
        with pytest.raises(Exception, match="not JSON"):
            await off_loop(lambda: add.delay(object(), 1))
        assert (await engine.jobs.list(JobFilter(), limit=10)).items == []


@pytest.mark.usefixtures("engine")
class TestGetFromAThread:
    async def test_a_waiting_thread_is_woken_when_the_job_finishes(self) -> None:
        handle = await blocker.delay()
        waiting = asyncio.ensure_future(off_loop(lambda: handle.get(timeout=10)))
        await not_done_within(waiting, 0.1)
        RELEASE.set()
        assert await asyncio.wait_for(waiting, 10) is None
        assert handle.state == states.SUCCESS

    async def test_timeout_leaves_no_waiter_behind(self, engine: Engine) -> None:
        handle = await add.apply_async((1, 2), countdown=60)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await off_loop(lambda: handle.get(timeout=0.2))
        assert time.monotonic() - started < 5
        await eventually(lambda: binding.bridge().waiting_threads == 0, what="the waiter is dropped")

    async def test_a_woken_waiter_is_dropped(self, engine: Engine) -> None:
        handle = await add.apply_async((1, 2), countdown=0.2)
        assert await off_loop(lambda: handle.get(timeout=5)) == 3
        assert binding.bridge().waiting_threads == 0

    async def test_unknown_id(self) -> None:
        with pytest.raises(UnknownResultError):
            await off_loop(lambda: AsyncResult("no-such-job").get(timeout=1))

    async def test_a_failure_is_raised_or_returned(self) -> None:
        handle = await boom.delay("x")
        with pytest.raises(Exception, match="boom"):
            await off_loop(lambda: handle.get(timeout=5))
        error = await off_loop(lambda: handle.get(timeout=5, propagate=False))
        assert isinstance(error, Exception) and "boom" in str(error)


async def test_stopping_the_engine_wakes_threads_still_waiting(tmp_path: Path) -> None:
    compat_tasks.RELEASE.clear()
    async with embedded_engine(db_path=str(tmp_path / "stop.db"), task_modules=["tests.integration.compat_tasks"]):
        handle = await add.apply_async((1, 2), countdown=600)
        waiting = asyncio.ensure_future(off_loop(lambda: handle.get(timeout=None)))
        await not_done_within(waiting, 0.1)
    with pytest.raises(EngineStopped):
        await asyncio.wait_for(waiting, 10)


@pytest.mark.usefixtures("engine")
class TestCommitFromThread:
    """The repository side, on each repository: True means stored and queued; False means nothing stored."""

    async def test_a_new_job_is_stored_and_claimable_or_refused_untouched(self, engine: Engine) -> None:
        job = Job(
            id="thread-job", task="compat.add", args=[1, 2], kwargs={}, due_at=time.time() + 600, created_at=time.time()
        )
        access = blocking_access(engine.repo)
        stored = await off_loop(lambda: access.commit_from_thread(Commit(jobs=[job])))
        found = await engine.jobs.get(job.id) if stored else None
        if not stored:
            with pytest.raises(NotFound):
                await engine.jobs.get(job.id)
            return
        assert found == job
        # the commit's queue change is applied on the commit's own thread
        assert await engine.repo.next_due_at() is not None
        claimed = await engine.repo.claim(owner="me", now=time.time() + 700, limit=5, lease_until=time.time() + 800)
        assert [each.id for each in claimed] == [job.id]


async def test_a_thread_submits_to_an_engine_whose_storage_is_open_but_not_started(storage: Storage) -> None:
    """A web process that only enqueues (a worker runs the jobs later): storage opened, no dispatcher."""
    container = storage.container()
    engine = container.engine()
    await engine.repo.open()
    binding.activate(engine, asyncio.get_running_loop())
    try:
        handle = await off_loop(lambda: add.delay(1, 2))
        job = await engine.jobs.get(handle.id)
        assert job.state == JobState.PENDING and job.args == [1, 2]
    finally:
        binding.deactivate(engine)
        await engine.repo.close()


async def test_commit_from_thread_is_refused_once_closed(tmp_path: Path) -> None:
    async with embedded_engine(db_path=str(tmp_path / "closed.db")) as engine:
        repo = engine.repo
    job = Job(id="late", task="compat.add", args=[1, 2], kwargs={}, due_at=time.time(), created_at=time.time())
    assert await off_loop(lambda: repo.commit_from_thread(Commit(jobs=[job]))) is False


@pytest.mark.usefixtures("engine")
class TestOnSqlite:
    """What only SQLite does: commit on the caller's thread (the memory repository is the loop's alone)."""

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Storage:
        return Storage("sqlite", db_path=str(tmp_path / "engine.db"))

    async def test_on_sqlite_neither_the_submit_nor_the_wait_goes_through_the_loop(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        no_loop_round_trips(monkeypatch)

        def call() -> list[Any]:
            handles = [add.delay(i, 1) for i in range(20)]
            return [handle.get(timeout=5) for handle in handles]  # type: ignore[union-attr]

        assert await off_loop(call) == list(range(1, 21))

    async def test_a_busy_database_makes_the_thread_wait_not_fail(self, storage: Storage) -> None:
        assert storage.db_path is not None
        other = sqlite3.connect(storage.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            submitted = asyncio.ensure_future(off_loop(lambda: add.delay(20, 1)))
            await not_done_within(submitted, 0.2)  # waiting (within the busy timeout), not failed
        finally:
            other.execute("COMMIT")
            other.close()
        handle = await asyncio.wait_for(submitted, 10)
        assert await handle.get(timeout=5) == 21

    async def test_a_guard_that_does_not_hold_raises_conflict(self, engine: Engine) -> None:
        submitted = await engine.jobs.submit(Signature(task="compat.add", args=[1, 2], countdown=600))
        changed = submitted.failed(revoked_error(submitted), now=time.time())
        guard = Guard(job_id=submitted.id, owner="somebody-else")
        with pytest.raises(Conflict):
            await off_loop(lambda: engine.repo.commit_from_thread(Commit(jobs=[changed], guard=guard)))
        assert (await engine.jobs.get(submitted.id)).state == JobState.PENDING


@pytest.mark.usefixtures("engine")
class TestResultSet:
    """``ResultSet(handles).get()``: Celery's join, from a thread and on the loop."""

    async def test_results_come_in_order_from_a_thread_and_on_the_loop(self) -> None:
        handles = [await add.delay(i, i) for i in range(40)]
        handles.append(await chain(add.s(1, 1), add.s(1)).apply_async())  # a workflow's handle too
        expected = [2 * i for i in range(40)] + [3]
        assert await off_loop(lambda: ResultSet(handles).get(timeout=10)) == expected
        assert await ResultSet(handles).get(timeout=10) == expected
        assert ResultSet(handles).ready() and ResultSet(handles).completed_count() == 41

    async def test_many_finished_results_are_read_in_few_queries(self, engine: Engine) -> None:
        handles = [await add.delay(i, 1) for i in range(300)]
        await off_loop(lambda: ResultSet(handles).get(timeout=20))
        reads: list[int] = []
        bridge = binding.bridge()
        peek_jobs = bridge.peek_jobs

        def counting(ids: Any) -> Any:
            reads.append(len(ids))
            return peek_jobs(ids)

        bridge.peek_jobs = counting  # type: ignore[method-assign]
        assert await off_loop(lambda: ResultSet(handles).get(timeout=5)) == [i + 1 for i in range(300)]
        assert sum(reads) == 300 and len(reads) <= 7  # 8 + 16 + ... doubling, not one read per handle

    async def test_the_first_failure_in_order_is_raised_or_every_outcome_returned(self) -> None:
        handles = [await add.delay(1, 1), await boom.delay("first"), await boom.delay("second")]
        with pytest.raises(Exception, match="first"):
            await off_loop(lambda: ResultSet(handles).get(timeout=10))
        with pytest.raises(Exception, match="first"):
            await ResultSet(handles).get(timeout=10)
        values = await off_loop(lambda: ResultSet(handles).get(timeout=10, propagate=False))
        assert values[0] == 2 and "first" in str(values[1]) and "second" in str(values[2])
        assert ResultSet(handles).failed() and not ResultSet(handles).successful()

    async def test_a_handle_still_running_is_waited_for_within_the_timeout(self) -> None:
        done = await add.delay(1, 2)
        later = await add.apply_async((3, 4), countdown=0.3)
        assert await off_loop(lambda: ResultSet([done, later]).get(timeout=10)) == [3, 7]
        never = await add.apply_async((5, 6), countdown=60)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await off_loop(lambda: ResultSet([done, never]).get(timeout=0.2))
        with pytest.raises(TimeoutError):
            await ResultSet([done, never]).get(timeout=0.2)
        assert time.monotonic() - started < 5

    async def test_an_unknown_id_is_reported(self) -> None:
        known = await add.delay(1, 2)
        with pytest.raises(UnknownResultError):
            await off_loop(lambda: ResultSet([known, AsyncResult("nope")]).get(timeout=5))
        with pytest.raises(UnknownResultError):
            await ResultSet([known, AsyncResult("nope")]).get(timeout=5)


class TestClaimedAsSubmitted:
    """A job a thread submits while a slot is free and nothing else is due is stored already claimed, and
    started (on SQLite from the announcement; elsewhere by the loop that stored it): no second
    transaction to claim it, no read of the next due time."""

    @staticmethod
    def count_claims(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        claimed: list[str] = []
        claim = engine.repo.claim

        async def counting(**options: Any) -> list[Job]:
            jobs = await claim(**options)
            claimed.extend(job.id for job in jobs)
            return jobs

        monkeypatch.setattr(engine.repo, "claim", counting)
        return claimed

    async def test_with_a_free_slot_the_job_never_waits_in_the_queue(
        self, storage: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with embedded_engine(
            **storage.engine_options(), task_modules=["tests.integration.compat_tasks"]
        ) as engine:
            claimed = self.count_claims(engine, monkeypatch)
            reads: list[float | None] = []
            next_due_at = engine.repo.next_due_at

            async def counting_reads() -> float | None:
                reads.append(await next_due_at())
                return reads[-1]

            monkeypatch.setattr(engine.repo, "next_due_at", counting_reads)
            handles = await off_loop(lambda: [add.delay(i, 1) for i in range(5)])
            assert await off_loop(lambda: [handle.get(timeout=5) for handle in handles]) == [1, 2, 3, 4, 5]
            jobs = [await engine.jobs.get(handle.id) for handle in handles]
            assert [job.attempts for job in jobs] == [1] * 5
            assert claimed == [] and reads == []
            assert engine.dispatcher.active_jobs == 0 and engine.dispatcher.reserved_slots == 0

    async def test_with_no_free_slot_the_job_is_queued_and_claimed_later(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        compat_tasks.RELEASE.clear()
        async with embedded_engine(
            db_path=str(tmp_path / "c.db"), task_modules=["tests.integration.compat_tasks"], max_concurrent_tasks=1
        ) as engine:
            claimed = self.count_claims(engine, monkeypatch)
            busy = await blocker.delay()  # takes the only slot
            await wait_until_started(engine, busy.id)
            handle = await off_loop(lambda: add.delay(2, 2))
            assert (await engine.jobs.get(handle.id)).state == JobState.PENDING
            compat_tasks.RELEASE.set()
            assert await off_loop(lambda: handle.get(timeout=5)) == 4
            assert claimed == [handle.id]

    async def test_a_job_that_could_not_be_stored_gives_its_slot_back(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        async with embedded_engine(
            db_path=str(tmp_path / "c.db"), task_modules=["tests.integration.compat_tasks"], max_concurrent_tasks=1
        ) as engine:
            monkeypatch.setattr(engine.repo, "commit_from_thread", lambda commit: False)  # as when busy
            handle = await off_loop(lambda: add.delay(3, 3))  # through the loop instead
            assert await off_loop(lambda: handle.get(timeout=5)) == 6
            assert engine.dispatcher.reserved_slots == 0
            again = await off_loop(lambda: add.delay(4, 4))  # the one slot is still usable
            assert await off_loop(lambda: again.get(timeout=5)) == 8


async def wait_until_started(engine: Engine, job_id: str) -> None:
    deadline = time.monotonic() + 5
    while (await engine.jobs.get(job_id)).state != JobState.STARTED:
        assert time.monotonic() < deadline, f"{job_id} did not start"
        await asyncio.sleep(0.01)
