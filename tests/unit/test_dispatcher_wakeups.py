"""When the dispatcher reads storage: only for work announced or due, never because a slot was freed.

Each claim and each read of the next due time is a round trip on PostgreSQL. An engine that stored a job
itself knows whether it is due: a job due now is claimed (or handed over as it is stored), a job due later
only moves the time the dispatcher wakes up, and a slot freed with nothing due costs no read, so the next
submission is handed over in its own commit. And an outcome whose workflow other commits keep advancing
is planned again until it is stored, never dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.due_work import DueWork
from application.engine import Engine, EngineSettings
from application.ports import Commit
from application.registry import TaskDefinition, TaskRegistry
from application.workflows import WORKFLOW_RETRIES
from domain.canvas import Signature
from domain.errors import WorkflowChanged
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock


def add(x: int, y: int) -> int:
    return x + y


class CountingRepository(InMemoryJobRepository):
    """Counts claims and reads of the next due time; ``hold_next_due`` keeps the next such read waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.claims = 0
        self.due_reads = 0
        self.hold_next_due: asyncio.Event | None = None
        self.reading = asyncio.Event()
        self.hold_next_claim: asyncio.Event | None = None
        self.claim_looked = asyncio.Event()

    async def claim(self, **kwargs: Any) -> Any:
        self.claims += 1
        found = await super().claim(**kwargs)  # looked first: what is stored meanwhile is not in it
        held, self.hold_next_claim = self.hold_next_claim, None
        if held is not None:
            self.claim_looked.set()
            await held.wait()
        return found

    async def next_due_at(self) -> float | None:
        self.due_reads += 1
        held, self.hold_next_due = self.hold_next_due, None
        if held is not None:
            value = await super().next_due_at()  # read first: what is stored meanwhile is not in it
            self.reading.set()
            await held.wait()
            return value
        return await super().next_due_at()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo() -> CountingRepository:
    return CountingRepository()


def engine_on(repo: InMemoryJobRepository, clock: FakeClock, *, slots: int) -> Engine:
    """An engine with the ``add`` task on ``repo``, running at most ``slots`` jobs at once."""
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="add", fn=add))
    return Engine.assemble(
        repo=repo,
        registry=registry,
        runner=AsyncioRunner(threads=slots),
        bus=InProcessEventBus(),
        clock=clock,
        ids=CountingIds(),
        settings=EngineSettings(max_concurrent_tasks=slots),
    )


@pytest.fixture
async def engine(repo: CountingRepository, clock: FakeClock) -> AsyncIterator[Engine]:
    built = engine_on(repo, clock, slots=2)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


async def settled() -> None:
    for _ in range(20):  # the dispatcher's loop and the jobs' tasks take a few turns of the loop
        await asyncio.sleep(0)


async def test_submissions_run_one_after_another_with_no_claim_nor_read(
    engine: Engine, repo: CountingRepository
) -> None:
    await settled()
    claims, reads = repo.claims, repo.due_reads
    for value in range(5):
        job = await engine.jobs.submit(Signature(task="add", args=[value, 1]))
        done = await engine.jobs.wait(job.id, timeout=5)
        assert done.state == JobState.SUCCESS and done.result == value + 1
    await settled()
    assert (repo.claims, repo.due_reads) == (claims, reads), "each was handed over as it was stored"


async def test_a_job_due_later_only_sets_the_wake_up_time(
    engine: Engine, repo: CountingRepository, clock: FakeClock
) -> None:
    await settled()
    claims, reads = repo.claims, repo.due_reads
    job = await engine.jobs.submit(Signature(task="add", args=[1, 1], countdown=30))
    await settled()
    assert (repo.claims, repo.due_reads) == (claims, reads)
    assert engine.dispatcher._due.next_due == job.due_at
    clock.advance(31)
    engine.dispatcher.wake()  # the loop sleeps on the real clock: told the time has come
    assert (await engine.jobs.wait(job.id, timeout=5)).result == 2


async def test_a_job_due_now_that_finds_no_free_slot_is_claimed_once_one_frees(
    engine: Engine, repo: CountingRepository
) -> None:
    engine.dispatcher.max_concurrent = 1
    await settled()
    first = await engine.jobs.submit(Signature(task="add", args=[1, 1]))
    second = await engine.jobs.submit(Signature(task="add", args=[2, 2]))  # stored queued, or handed over
    assert (await engine.jobs.wait(first.id, timeout=5)).result == 2
    assert (await engine.jobs.wait(second.id, timeout=5)).result == 4


async def test_a_job_stored_while_the_due_time_is_read_is_not_forgotten(
    engine: Engine, repo: CountingRepository, clock: FakeClock
) -> None:
    await settled()
    hold = repo.hold_next_due = asyncio.Event()
    engine.dispatcher.wake()  # the loop claims (nothing), then reads the next due time: held
    await asyncio.wait_for(repo.reading.wait(), 5)
    job = await engine.jobs.submit(Signature(task="add", args=[3, 3], countdown=30))
    hold.set()
    await settled()
    assert engine.dispatcher._due.next_due == job.due_at, "the read, older than the job, did not erase it"
    clock.advance(31)
    engine.dispatcher.wake()
    assert (await engine.jobs.wait(job.id, timeout=5)).result == 6


async def test_work_this_engine_queued_itself_is_claimed_with_no_read_of_the_next_due_time(
    engine: Engine, repo: CountingRepository
) -> None:
    engine.dispatcher.max_concurrent = 1
    await settled()
    claims, reads = repo.claims, repo.due_reads
    jobs = [await engine.jobs.submit(Signature(task="add", args=[value, 1])) for value in range(6)]
    for value, job in enumerate(jobs):
        assert (await engine.jobs.wait(job.id, timeout=5)).result == value + 1
    await settled()
    assert repo.claims > claims, "some found the slot taken, were stored queued and claimed"
    assert repo.due_reads == reads, "every due time in storage was known: none was read"


async def test_a_job_stored_while_a_claim_looks_is_claimed_after_it(engine: Engine, repo: CountingRepository) -> None:
    engine.dispatcher.max_concurrent = 1
    await settled()
    hold = repo.hold_next_claim = asyncio.Event()
    engine.dispatcher.wake()  # the loop claims: it finds nothing, and is held before it hears so
    await asyncio.wait_for(repo.claim_looked.wait(), 5)
    job = await engine.jobs.submit(Signature(task="add", args=[4, 4]))  # stored queued: the claim holds the slot
    hold.set()
    assert (await engine.jobs.wait(job.id, timeout=5)).result == 8, "the drained claim did not strand it"


async def test_announced_work_and_a_due_time_gone_by_are_read_again(
    engine: Engine, repo: CountingRepository, clock: FakeClock
) -> None:
    await settled()
    reads = repo.due_reads
    engine.dispatcher.wake()  # another engine may have stored jobs due later: their times are in storage
    await settled()
    assert repo.due_reads == reads + 1
    first = await engine.jobs.submit(Signature(task="add", args=[1, 1], countdown=30))
    second = await engine.jobs.submit(Signature(task="add", args=[2, 2], countdown=60))
    await settled()
    assert repo.due_reads == reads + 1 and engine.dispatcher._due.next_due == first.due_at
    clock.advance(31)
    engine.dispatcher._slot_freed()  # the loop sleeps on the real clock: nudged, not told of new work
    assert (await engine.jobs.wait(first.id, timeout=5)).result == 2
    await settled()
    assert repo.due_reads == reads + 2, "the time it knew went by: the next one is read"
    assert engine.dispatcher._due.next_due == second.due_at


class RacedRepository(CountingRepository):
    """Every guarded commit of a finished job is refused ``races`` times as if another engine had advanced
    its workflow meanwhile (the members of a chord finishing at once on several engines)."""

    def __init__(self, races: int) -> None:
        super().__init__()
        self.races = races

    async def commit(self, commit: Commit) -> None:
        if commit.guard is not None and self.races > 0 and any(job.state == JobState.SUCCESS for job in commit.jobs):
            self.races -= 1
            raise WorkflowChanged("another engine advanced the workflow")
        await super().commit(commit)


async def test_an_outcome_whose_workflow_keeps_changing_is_planned_again_until_it_is_stored(clock: FakeClock) -> None:
    """Past the 20 plans that were once the limit: the outcome was dropped as if the lease was lost, the
    job stayed STARTED until its lease expired, and then ran a second time."""
    repo = RacedRepository(races=WORKFLOW_RETRIES + 15)
    engine = engine_on(repo, clock, slots=1)
    await engine.start()
    try:
        job = await engine.jobs.submit(Signature(task="add", args=[20, 22]))
        done = await engine.jobs.wait(job.id, timeout=10)
        assert done.state == JobState.SUCCESS and done.result == 42 and done.attempts == 1
        assert repo.races == 0
    finally:
        await engine.stop()


class CrossingClock(FakeClock):
    """Once armed, the dispatcher's loop's next read of the time still sees the present, and every read after
    it (any caller's) sees ``cross_to``: time passes a due time between two reads of one turn of the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.cross_to: float | None = None

    def now(self) -> float:
        value = self.current
        task = asyncio.current_task() if _has_running_loop() else None
        if self.cross_to is not None and task is not None and task.get_name() == "geekblog-dispatcher":
            self.current, self.cross_to = self.cross_to, None
        return value


def _has_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def test_a_job_that_falls_due_between_two_looks_of_the_loop_is_still_claimed() -> None:
    """The loop looked (nothing due: no slot taken), then the job fell due before it chose how long to sleep:
    it must look again at once, not sleep until something else wakes it (an idle service never ran the job;
    seen as a delayed job left PENDING, now and then, where the loop woke up a hair before its due time)."""
    clock = CrossingClock()
    repo = CountingRepository()
    engine = engine_on(repo, clock, slots=2)
    await engine.start()
    try:
        await settled()
        clock.cross_to = clock.current + 31
        job = await engine.jobs.submit(Signature(task="add", args=[4, 5], countdown=30))  # wakes the loop
        assert (await engine.jobs.wait(job.id, timeout=5)).result == 9
        assert clock.cross_to is None, "the loop did read the time before the job was due"
    finally:
        await engine.stop()


async def test_a_job_due_now_stored_while_a_claim_looked_keeps_the_queue_behind() -> None:
    due = DueWork()
    reads: list[float | None] = []

    async def read() -> float | None:
        reads.append(None)
        return None

    await due.drained(read, 100.0)  # the dispatcher starts: nothing stored
    assert due.stored([100.0], 100.0) and due.behind  # this engine stored a job due now: claim it
    due.claiming()
    due.stored([100.0], 100.0)  # another one, committed after the claim looked
    await due.drained(read, 100.0)  # the claim took the first only
    assert due.behind, "the second is in storage, unclaimed: the loop must claim again"
    assert reads == [None], "every due time stored was this engine's own: nothing to read"
    due.claiming()
    await due.drained(read, 100.0)
    assert not due.behind
