"""The application services on fakes: submission, recovery of lost work, lease guards, retry timing."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator

import msgspec
import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.engine import Engine, EngineSettings
from application.ports import Commit, Guard
from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Chain, Signature
from domain.errors import Conflict, InvalidCanvas, UnknownTask
from domain.job import Job
from domain.retry_policy import RetryPolicy
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock


def flaky(x: int) -> int:
    raise ConnectionError("down")


GATE = threading.Event()
ORDER: list[str] = []


def gated() -> str:
    assert GATE.wait(10), "the test never opened the gate"
    return "gated"


def record(label: str) -> str:
    ORDER.append(label)
    return label


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def repo() -> InMemoryJobRepository:
    return InMemoryJobRepository()


def build_engine(repo: InMemoryJobRepository, clock: FakeClock, settings: EngineSettings) -> Engine:
    """An engine on fakes with the tasks these tests use: add, once (no re-run when lost), flaky,
    gated (waits for ``GATE``), record (appends to ``ORDER``)."""
    registry = TaskRegistry()
    registry.register(TaskDefinition(name="add", fn=lambda x, y: x + y))
    registry.register(TaskDefinition(name="once", fn=lambda: 1, retry_on_worker_lost=False))
    registry.register(TaskDefinition(name="gated", fn=gated))
    registry.register(TaskDefinition(name="record", fn=record))
    registry.register(
        TaskDefinition(
            name="flaky",
            fn=flaky,
            autoretry_for=(ConnectionError,),
            retry_policy=RetryPolicy(default_retry_delay=30),
        )
    )
    return Engine.assemble(
        repo=repo,
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=clock,
        ids=CountingIds(),
        settings=settings,
    )


@pytest.fixture
async def engine(repo: InMemoryJobRepository, clock: FakeClock) -> AsyncIterator[Engine]:
    built = build_engine(repo, clock, EngineSettings(max_concurrent_tasks=2))
    yield built
    await built.runner.close()


async def leave_running(repo: InMemoryJobRepository, job: Job, owner: str = "dead-process") -> Job:
    """Simulate a process that claimed ``job`` and died."""
    claimed = await repo.claim(owner=owner, now=job.due_at, limit=1, lease_until=job.due_at + 60)
    assert [c.id for c in claimed] == [job.id]
    return claimed[0]


class TestSubmit:
    async def test_a_job_is_stored_before_its_handle_returns(self, engine: Engine, repo: InMemoryJobRepository) -> None:
        job = await engine.jobs.submit(Signature(task="add", args=[1, 2]))
        stored = await repo.get(job.id)
        assert stored is not None and stored.state == JobState.PENDING and stored.args == [1, 2]

    async def test_an_unknown_task_is_refused(self, engine: Engine) -> None:
        with pytest.raises(UnknownTask, match="'nope'"):
            await engine.jobs.submit(Signature(task="nope"))

    async def test_a_canvas_naming_an_unknown_task_is_refused_whole(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        with pytest.raises(InvalidCanvas, match="'nope'"):
            await engine.jobs.submit_canvas(Chain(steps=[Signature(task="add"), Signature(task="nope")]))
        assert await repo.count_by_state() == {}

    async def test_a_chain_stores_only_its_first_step(self, engine: Engine, repo: InMemoryJobRepository) -> None:
        workflow = await engine.jobs.submit_canvas(
            Chain(steps=[Signature(task="add", args=[1, 1]), Signature(task="add", args=[1])])
        )
        jobs = await repo.workflow_jobs(workflow.id)
        assert [(job.node, job.args) for job in jobs] == [("0", [1, 1])]

    async def test_countdown_sets_when_the_job_is_due(self, engine: Engine, clock: FakeClock) -> None:
        job = await engine.jobs.submit(Signature(task="add", args=[1, 2], countdown=15))
        assert job.due_at == clock.now() + 15


class TestRecovery:
    async def test_a_job_left_running_is_requeued_with_its_attempt_counted(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        job = await leave_running(repo, await engine.jobs.submit(Signature(task="add", args=[1, 2])))
        assert await engine.dispatcher.recover(math.inf) == 1
        recovered = await repo.get(job.id)
        assert recovered is not None and recovered.state == JobState.PENDING and recovered.attempts == 1
        assert recovered.lease_owner is None

    async def test_a_task_that_opted_out_fails_with_worker_lost_error(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        job = await leave_running(repo, await engine.jobs.submit(Signature(task="once")))
        await engine.dispatcher.recover(math.inf)
        failed = await repo.get(job.id)
        assert failed is not None and failed.state == JobState.FAILURE
        assert failed.error is not None and failed.error.type == "WorkerLostError"

    async def test_a_job_out_of_attempts_fails_instead_of_looping(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        job = await engine.jobs.submit(Signature(task="add", args=[1, 2], max_retries=0))
        await leave_running(repo, job)
        await engine.dispatcher.recover(math.inf)
        failed = await repo.get(job.id)
        assert failed is not None and failed.state == JobState.FAILURE

    async def test_only_expired_leases_are_taken_when_storage_is_shared(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        job = await leave_running(repo, await engine.jobs.submit(Signature(task="add", args=[1, 2])))
        assert await engine.dispatcher.recover(clock.now()) == 0
        clock.advance(61)
        assert await engine.dispatcher.recover(clock.now()) == 1
        recovered = await repo.get(job.id)
        assert recovered is not None and recovered.state == JobState.PENDING

    async def test_a_lost_workflow_step_that_fails_fails_its_workflow(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        workflow = await engine.jobs.submit_canvas(Chain(steps=[Signature(task="once"), Signature(task="add")]))
        (first,) = await repo.workflow_jobs(workflow.id)
        await leave_running(repo, first)
        await engine.dispatcher.recover(math.inf)
        stored = await repo.get_workflow(workflow.id)
        assert stored is not None and stored.state == JobState.FAILURE
        assert len(await repo.workflow_jobs(workflow.id)) == 1


class TestLeaseGuard:
    async def test_a_late_result_from_a_lost_lease_is_refused(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        job = await leave_running(repo, await engine.jobs.submit(Signature(task="add", args=[1, 2])), owner="old")
        await engine.dispatcher.recover(math.inf)
        (reclaimed,) = await repo.claim(owner="new", now=clock.now(), limit=1, lease_until=clock.now() + 60)
        late = msgspec.structs.replace(job, state=JobState.SUCCESS, result=999, lease_owner=None)
        with pytest.raises(Conflict):
            await repo.commit(Commit(jobs=[late], guard=Guard(job_id=job.id, owner="old")))
        current = await repo.get(job.id)
        assert current is not None and current.result is None and current.lease_owner == "new"
        assert reclaimed.attempts == 2


class TestRetryTiming:
    async def test_autoretry_waits_the_default_retry_delay(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        events = engine.bus.subscribe(None)
        job = await engine.jobs.submit(Signature(task="flaky", args=[1]))
        await engine.dispatcher.start(recover_all_leases=True)
        try:
            while (event := await events.next(timeout=2)) is not None and event.state != JobState.RETRY:
                pass
            assert event is not None, "the job never went to RETRY"
            stored = await repo.get(job.id)
            assert stored is not None and stored.state == JobState.RETRY
            assert stored.due_at == clock.now() + 30
            assert stored.error is not None and stored.error.type == "ConnectionError"
        finally:
            events.close()
            await engine.dispatcher.stop()


class TestCancel:
    async def test_revoking_a_queued_step_revokes_its_workflow(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        workflow = await engine.jobs.submit_canvas(
            Chain(steps=[Signature(task="add", args=[1, 1]), Signature(task="add")])
        )
        (first,) = await repo.workflow_jobs(workflow.id)
        revoked = await engine.jobs.cancel(first.id)
        assert revoked.state == JobState.REVOKED
        stored = await repo.get_workflow(workflow.id)
        assert stored is not None and stored.state == JobState.REVOKED

    async def test_retrying_a_revoked_step_reopens_its_workflow(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        workflow = await engine.jobs.submit_canvas(
            Chain(steps=[Signature(task="add", args=[1, 1]), Signature(task="add")])
        )
        (first,) = await repo.workflow_jobs(workflow.id)
        await engine.jobs.cancel(first.id)
        again = await engine.jobs.retry(first.id)
        assert again.state == JobState.PENDING and again.attempts == 0
        stored = await repo.get_workflow(workflow.id)
        assert stored is not None and stored.state == JobState.PENDING and stored.error is None


class TestMaintenance:
    async def test_a_job_whose_lease_ran_out_is_requeued_by_the_next_round(
        self, engine: Engine, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        job = await leave_running(repo, await engine.jobs.submit(Signature(task="add", args=[1, 2])), owner="me")
        assert await engine.maintenance.run_once() == (0, 0), "a live lease is left alone"
        clock.advance(61)
        recovered, _ = await engine.maintenance.run_once()
        assert recovered == 1
        stored = await repo.get(job.id)
        assert stored is not None and stored.state == JobState.PENDING

    async def test_finished_work_past_its_retention_is_purged(
        self, repo: InMemoryJobRepository, clock: FakeClock
    ) -> None:
        engine = build_engine(repo, clock, EngineSettings(result_ttl=3600))
        job = await engine.jobs.submit(Signature(task="add", args=[1, 2]))
        await engine.jobs.cancel(job.id)
        clock.advance(3599)
        assert await engine.maintenance.run_once() == (0, 0)
        clock.advance(2)
        assert await engine.maintenance.run_once() == (0, 1)
        assert await repo.get(job.id) is None


class GatedRepository(InMemoryJobRepository):
    """Holds the commit of a job's outcome (guarded by its lease owner, and not a revocation, which is
    guarded by the owner too) until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.outcome_waiting = asyncio.Event()
        self.gate = asyncio.Event()

    async def commit(self, commit: Commit) -> None:
        outcome = commit.guard is not None and commit.guard.owner is not None
        if outcome and not self.gate.is_set() and all(job.state != JobState.REVOKED for job in commit.jobs):
            self.outcome_waiting.set()
            await self.gate.wait()
        await super().commit(commit)


class TestCancelRacingTheOutcome:
    async def test_a_cancel_while_the_outcome_is_being_stored_ends_revoked_or_conflicts_never_stuck(
        self, clock: FakeClock
    ) -> None:
        repo = GatedRepository()
        engine = build_engine(repo, clock, EngineSettings())
        job = await engine.jobs.submit(Signature(task="add", args=[1, 2]))
        await engine.dispatcher.start(recover_all_leases=True)
        try:
            await asyncio.wait_for(repo.outcome_waiting.wait(), 5)
            answer = await engine.jobs.cancel(job.id)
            assert answer.state == JobState.REVOKED
            repo.gate.set()
            final = await engine.jobs.wait(job.id, timeout=5)
            assert final.state == JobState.REVOKED, "the late outcome was refused"
            assert final.result is None
        finally:
            repo.gate.set()
            await engine.dispatcher.stop()
            await engine.runner.close()


class ClaimCountingRepository(InMemoryJobRepository):
    """Remembers which jobs went through :meth:`claim`."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: list[str] = []

    async def claim(self, *, owner: str, now: float, limit: int, lease_until: float) -> list[Job]:
        jobs = await super().claim(owner=owner, now=now, limit=limit, lease_until=lease_until)
        self.claimed += [job.id for job in jobs]
        return jobs


OneSlot = tuple[Engine, ClaimCountingRepository]


class TestHandOver:
    """A finished step's commit also claims the steps it unblocks, when nothing else is due."""

    @pytest.fixture
    async def one_slot(self, clock: FakeClock) -> AsyncIterator[OneSlot]:
        """A started engine with one slot, over a repository that remembers what went through claim."""
        repo = ClaimCountingRepository()
        engine = build_engine(repo, clock, EngineSettings(max_concurrent_tasks=1))
        await engine.start()
        try:
            yield engine, repo
        finally:
            GATE.set()  # a gated task must not outlive the test
            await engine.stop()
            await engine.runner.close()

    async def test_each_chain_step_starts_from_its_predecessors_commit(self, one_slot: OneSlot) -> None:
        engine, repo = one_slot
        steps = [Signature(task="add", args=[1, 1]), *(Signature(task="add", args=[1]) for _ in range(4))]
        workflow = await engine.jobs.submit_canvas(Chain(steps=steps))
        finished = await engine.jobs.wait(workflow.id, timeout=5)
        assert finished.state == JobState.SUCCESS and finished.result == 6
        jobs = await repo.workflow_jobs(workflow.id)
        assert [job.state for job in jobs] == [JobState.SUCCESS] * 5
        assert [job.attempts for job in jobs] == [1] * 5  # claimed once each, attempt counted
        assert repo.claimed == []  # the first started from the submission's commit, each next from the last's

    async def test_a_job_already_due_is_not_overtaken(self, one_slot: OneSlot) -> None:
        ORDER.clear()
        GATE.clear()
        engine, repo = one_slot
        workflow = await engine.jobs.submit_canvas(
            Chain(steps=[Signature(task="gated"), Signature(task="record", args=["chain"], immutable=True)])
        )
        first = (await repo.workflow_jobs(workflow.id))[0]
        for _ in range(500):
            if (await engine.jobs.get(first.id)).state == JobState.STARTED:
                break
            await asyncio.sleep(0.01)
        plain = await engine.jobs.submit(Signature(task="record", args=["plain"]))  # due, no free slot
        GATE.set()
        await engine.jobs.wait(workflow.id, timeout=5)
        await engine.jobs.wait(plain.id, timeout=5)
        assert ORDER == ["plain", "chain"]
        assert plain.id in repo.claimed

    async def test_a_submission_starts_from_its_own_commit_when_a_slot_is_free(self, one_slot: OneSlot) -> None:
        engine, repo = one_slot
        submitted = await engine.jobs.submit(Signature(task="add", args=[1, 2]))
        assert submitted.state == JobState.PENDING  # the answer is the job as submitted
        finished = await engine.jobs.wait(submitted.id, timeout=5)
        assert finished.state == JobState.SUCCESS and finished.result == 3 and finished.attempts == 1
        assert repo.claimed == []  # stored already claimed, never queued

    async def test_with_no_free_slot_a_submission_waits_for_a_claim(self, one_slot: OneSlot) -> None:
        GATE.clear()
        engine, repo = one_slot
        busy = await engine.jobs.submit(Signature(task="gated"))
        queued = await engine.jobs.submit(Signature(task="add", args=[2, 2]))
        assert (await engine.jobs.get(queued.id)).state == JobState.PENDING
        GATE.set()
        assert (await engine.jobs.wait(queued.id, timeout=5)).result == 4
        assert repo.claimed == [queued.id]
        assert (await engine.jobs.get(busy.id)).state == JobState.SUCCESS

    async def test_an_engine_that_is_not_running_starts_nothing(
        self, engine: Engine, repo: InMemoryJobRepository
    ) -> None:
        submitted = await engine.jobs.submit(Signature(task="add", args=[1, 2]))
        assert (await repo.get(submitted.id)) == submitted  # stored PENDING, nothing claimed

    async def test_a_job_claimed_as_the_engine_stops_goes_back_to_the_queue_unstarted(
        self, one_slot: OneSlot, clock: FakeClock
    ) -> None:
        engine, repo = one_slot
        pending = Job(id="late", task="add", args=[1, 2], due_at=clock.now(), created_at=clock.now())
        started = engine.dispatcher.claim_new(pending)  # a thread is storing it claimed...
        assert started is not None and started.state == JobState.STARTED and started.attempts == 1
        await repo.commit(Commit(jobs=[started]))
        stopping = asyncio.ensure_future(engine.dispatcher.stop())  # ...as the engine begins to stop
        await asyncio.sleep(0)
        engine.dispatcher.launch_claimed(started)
        await stopping
        assert await repo.get("late") == pending  # queued as submitted: it never ran, no attempt counted
        assert engine.dispatcher.active_jobs == 0

    async def test_a_job_revoked_between_its_claim_and_its_launch_never_runs(
        self, one_slot: OneSlot, clock: FakeClock
    ) -> None:
        ORDER.clear()
        engine, repo = one_slot
        pending = Job(id="doomed", task="record", args=["ran"], due_at=clock.now(), created_at=clock.now())
        started = engine.dispatcher.claim_new(pending)
        assert started is not None
        await repo.commit(Commit(jobs=[started]))  # stored claimed by a thread, not launched yet
        assert (await engine.jobs.cancel("doomed")).state == JobState.REVOKED
        engine.dispatcher.launch_claimed(started)  # its announcement arrives after the cancel
        assert engine.dispatcher.active_jobs == 0  # not launched
        assert ORDER == []
        assert (await repo.get("doomed")).state == JobState.REVOKED  # type: ignore[union-attr]
        follow = await engine.jobs.submit(Signature(task="add", args=[1, 1]))  # its slot is free again
        assert (await engine.jobs.wait(follow.id, timeout=5)).result == 2
