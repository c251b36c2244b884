"""What an engine tells the other engines of its storage and does with what they tell it (application/peers.py),
on fakes: the memory repository shared as a database would be, and a link that records (RecordingLink)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from adapters.no_peers import NoPeers
from application.engine import Engine, EngineSettings
from application.events import Event
from application.peers import Peers
from application.ports import Commit, Guard
from application.recovery import recover_lost
from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Signature
from domain.errors import Conflict
from domain.job import Job
from domain.states import JobState
from tests.support.waiting import eventually
from tests.unit.fakes import CountingIds, FakeClock, RecordingLink

HELD: list[str] = []


async def held(key: str) -> str:
    """Runs until cancelled."""
    HELD.append(key)
    await asyncio.Event().wait()
    return key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo() -> InMemoryJobRepository:
    return InMemoryJobRepository()


@pytest.fixture
def link() -> RecordingLink:
    return RecordingLink(answers={})


def build(repo: InMemoryJobRepository, clock: FakeClock, link: RecordingLink | NoPeers, poll: float = 60.0) -> Engine:
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="add", fn=lambda x, y: x + y))
    registry.register(TaskDefinition(name="held", fn=held))
    return Engine.assemble(
        repo=repo,
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=clock,
        ids=CountingIds(),
        settings=EngineSettings(exclusive_storage=False, poll_seconds=poll),
        link=link,
    )


@pytest.fixture
async def engine(repo: InMemoryJobRepository, clock: FakeClock, link: RecordingLink) -> AsyncIterator[Engine]:
    HELD.clear()
    built = build(repo, clock, link)
    await built.start()
    try:
        yield built
    finally:
        await built.stop()


def peers_of(engine: Engine) -> Peers:
    assert engine.peers is not None
    return engine.peers


async def stored(repo: InMemoryJobRepository, job_id: str) -> Job:
    job = await repo.get(job_id)
    assert job is not None
    return job


async def queued_elsewhere(engine: Engine, repo: InMemoryJobRepository, signature: Signature) -> Job:
    """A job another engine committed: in storage, and this engine was not told."""
    job = engine.jobs.new_job(signature)
    await repo.commit(Commit(jobs=[job]))
    return job


async def claimed_elsewhere(engine: Engine, repo: InMemoryJobRepository, clock: FakeClock, lease: float) -> Job:
    """A job another engine ("other") claimed, its lease ending ``lease`` seconds from now."""
    job = await queued_elsewhere(engine, repo, Signature(task="add", args=[1, 2]))
    claimed = await repo.claim(owner="other", now=clock.now(), limit=1, lease_until=clock.now() + lease)
    assert [c.id for c in claimed] == [job.id]
    return claimed[0]


class TestWhatTheOthersAreTold:
    async def test_every_event_published_here_is_relayed_and_a_queued_job_announces_work(
        self, engine: Engine, repo: InMemoryJobRepository, link: RecordingLink
    ) -> None:
        assert link.name == engine.dispatcher.owner  # opened as this engine's lease owner
        ran = await engine.jobs.submit(Signature(task="add", args=[1, 2]))  # claimed as stored: runs here
        await eventually(lambda: ("SUCCESS", 3) in [(e.state, e.result) for e in link.relayed if e.id == ran.id])
        assert link.queued == 0  # claimed as it was stored: nothing was left in the queue
        later = await engine.jobs.submit(Signature(task="add", args=[1, 2], countdown=60))
        assert [(e.id, e.state) for e in link.relayed][-1] == (later.id, "PENDING")
        await eventually(lambda: link.queued == 1, what="work announced")  # once the loop turns
        await engine.jobs.submit(Signature(task="add", args=[1, 2], countdown=60))
        await engine.jobs.submit(Signature(task="add", args=[1, 2], countdown=60))
        await eventually(lambda: link.queued >= 2, what="work announced again")

    async def test_alone_on_its_storage_it_tells_nobody_anything(
        self, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        alone = RecordingLink(shared=False)
        built = build(repo, clock, alone)
        await built.start()
        try:
            job = await built.jobs.submit(Signature(task="add", args=[2, 2], countdown=60))
            assert await peers_of(built).cancel_running(job.id) is False
        finally:
            await built.stop()
        assert alone.inbox is None and alone.relayed == [] and alone.queued == 0 and not alone.closed

    async def test_no_peers_is_the_link_of_an_engine_alone(self) -> None:
        link = NoPeers()
        assert link.shared is False
        assert await link.cancel_on("anyone", "job", timeout=1.0) is False


class TestWhatTheOthersTell:
    async def test_work_queued_elsewhere_wakes_the_dispatcher(
        self, engine: Engine, repo: InMemoryJobRepository, link: RecordingLink
    ) -> None:
        job = await queued_elsewhere(engine, repo, Signature(task="add", args=[4, 4]))
        assert link.inbox is not None
        link.inbox.work_queued()
        await eventually(lambda: repo.peek(job.id).state == JobState.SUCCESS, what="the job run")

    async def test_events_from_elsewhere_reach_subscribers_and_waiters_only(
        self, engine: Engine, link: RecordingLink
    ) -> None:
        counted: list[Event] = []
        waiters: list[Event] = []
        engine.bus.add_listener(counted.append)
        engine.bus.add_listener(waiters.append, relayed=True)
        subscription = engine.bus.subscribe("elsewhere-1")
        event = Event(kind="job", id="elsewhere-1", state="SUCCESS", at=1.0, task="add", result=3)
        assert link.inbox is not None
        link.inbox.deliver(event)
        numbered = msgspec.structs.replace(event, seq=engine.bus.position)  # the bus numbers what it passes on
        assert await subscription.next(0) == numbered
        assert waiters == [numbered] and counted == []
        assert event not in link.relayed  # not sent back to the others
        subscription.close()

    async def test_a_cancel_asked_by_another_engine_stops_the_job_running_here(
        self, engine: Engine, repo: InMemoryJobRepository, link: RecordingLink
    ) -> None:
        job = await engine.jobs.submit(Signature(task="held", args=["here"]))
        await eventually(lambda: HELD == ["here"], what="the job running")
        assert link.inbox is not None
        assert await link.inbox.cancel_here(job.id) is True
        revoked = await stored(repo, job.id)
        assert revoked.state == JobState.REVOKED and revoked.error is not None
        assert revoked.error.type == "TaskRevokedError"
        assert await link.inbox.cancel_here(job.id) is False  # not running here (any more)


class TestCancellingAJobRunningElsewhere:
    async def test_its_engine_is_asked(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock, link: RecordingLink
    ) -> None:
        job = await claimed_elsewhere(engine, repo, clock, lease=60)
        link.answers["other"] = True
        assert await peers_of(engine).cancel_running(job.id) is True
        assert link.asked == [("other", job.id)]

    async def test_without_an_answer_the_revocation_is_stored_here(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock, link: RecordingLink
    ) -> None:
        job = await claimed_elsewhere(engine, repo, clock, lease=60)
        revoked = await engine.jobs.cancel(job.id)
        assert link.asked == [("other", job.id)]
        assert revoked.state == JobState.REVOKED and (await stored(repo, job.id)).state == JobState.REVOKED

    async def test_a_job_taken_over_while_its_engine_was_asked_is_revoked_as_it_is_now(
        self, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        """The asked engine does not answer; meanwhile its lease expired and a third engine claimed the job
        again (attempt 2). The revocation is stored on that claim, never on the stale copy read before."""

        class TakenOver(RecordingLink):
            async def cancel_on(self, owner: str, job_id: str, *, timeout: float) -> bool:
                if owner == "other":
                    lost = await repo.get(job_id)
                    assert lost is not None
                    await repo.commit(Commit(jobs=[lost.requeued(now=clock.now())]))
                    now = clock.now()
                    await repo.claim(owner="third", now=now, limit=1, lease_until=now + 60)
                return await super().cancel_on(owner, job_id, timeout=timeout)

        link = TakenOver()
        engine = build(repo, clock, link)
        await engine.start()
        try:
            job = await claimed_elsewhere(engine, repo, clock, lease=60)
            assert job.attempts == 1
            revoked = await engine.jobs.cancel(job.id)
            assert link.asked == [("other", job.id), ("third", job.id)]
            stored_now = await stored(repo, job.id)
            assert (stored_now.state, stored_now.attempts) == (JobState.REVOKED, 2)
            assert revoked.attempts == 2
        finally:
            await engine.stop()

    async def test_nobody_is_asked_for_an_expired_lease_or_a_claim_of_this_engine(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock, link: RecordingLink
    ) -> None:
        expired = await claimed_elsewhere(engine, repo, clock, lease=-1)
        assert await peers_of(engine).cancel_running(expired.id) is False
        await engine.dispatcher.stop()
        ours = await engine.jobs.submit(Signature(task="add", args=[1, 1]))
        now = clock.now()
        await repo.claim(owner=engine.dispatcher.owner, now=now, limit=1, lease_until=now + 60)
        assert (await stored(repo, ours.id)).lease_owner == engine.dispatcher.owner
        assert await peers_of(engine).cancel_running(ours.id) is False
        assert link.asked == []


class TestTheSafetyNet:
    async def test_the_poll_runs_work_nobody_announced(self, repo: InMemoryJobRepository, clock: FakeClock) -> None:
        link = RecordingLink()
        built = build(repo, clock, link, poll=0.01)
        await built.start()
        try:
            job = await queued_elsewhere(built, repo, Signature(task="add", args=[5, 5]))
            await eventually(lambda: repo.peek(job.id).state == JobState.SUCCESS, what="the job run")
        finally:
            await built.stop()

    async def test_the_poll_recovers_an_expired_lease_of_a_dead_engine(
        self, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        link = RecordingLink()
        built = build(repo, clock, link, poll=0.01)
        job = await claimed_elsewhere(built, repo, clock, lease=30)
        await built.start()  # the lease is alive: not recovered at start
        try:
            assert repo.peek(job.id).lease_owner == "other"
            clock.advance(31)
            await eventually(lambda: repo.peek(job.id).state == JobState.SUCCESS, what="the job recovered and run")
        finally:
            await built.stop()
        done = await stored(repo, job.id)
        assert done.attempts == 2 and done.options.redelivered

    async def test_a_job_another_engine_recovered_first_is_skipped(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        first = await claimed_elsewhere(engine, repo, clock, lease=-1)
        second = await claimed_elsewhere(engine, repo, clock, lease=-1)
        stored_here: list[str] = []

        async def store(job: Job, guard: Guard) -> None:
            if job.id == first.id:
                raise Conflict(f"job {job.id} is no longer leased to other")
            stored_here.append(job.id)

        assert await recover_lost(repo, clock, store, clock.now()) == 1
        assert stored_here == [second.id]
