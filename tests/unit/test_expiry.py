"""Celery's ``expires`` on the engine, with a fake clock: a job not started by then ends REVOKED ("expired")
without running, whenever it is claimed, and does not hold the queue behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapters.memory_job_repository import InMemoryJobRepository
from application.engine import Engine, EngineSettings
from application.ports import Commit
from domain.canvas import Chain, Signature
from domain.errors import InvalidSchedule
from domain.job import CallOptions, Job
from domain.states import JobState
from tests.unit import test_services
from tests.unit.fakes import FakeClock
from tests.unit.test_services import ORDER, build_engine


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def started(clock: FakeClock) -> AsyncIterator[tuple[Engine, InMemoryJobRepository]]:
    """A started engine with one slot, on the memory repository and the fake clock."""
    ORDER.clear()
    repo = InMemoryJobRepository()
    engine = build_engine(repo, clock, EngineSettings(max_concurrent_tasks=1))
    await engine.start()
    try:
        yield engine, repo
    finally:
        test_services.GATE.set()
        await engine.stop()
        await engine.runner.close()


def expired(job: Job) -> bool:
    return (
        job.state == JobState.REVOKED
        and job.error is not None
        and job.error.type == "TaskRevokedError"
        and job.error.message.endswith("expired")
        and job.started_at is not None  # claimed, then revoked at its launch, never run
    )


class TestExpiry:
    async def test_a_job_due_after_it_expires_is_revoked_unrun(
        self, started: tuple[Engine, InMemoryJobRepository], clock: FakeClock
    ) -> None:
        engine, _ = started
        job = await engine.jobs.submit(Signature(task="record", args=["late"], countdown=30, expires=clock.now() + 10))
        assert job.options.expires == clock.now() + 10
        clock.advance(31)
        engine.dispatcher.wake()
        done = await engine.jobs.wait(job.id, timeout=5)
        assert isinstance(done, Job) and expired(done)
        assert ORDER == []

    async def test_a_job_started_before_it_expires_runs(
        self, started: tuple[Engine, InMemoryJobRepository], clock: FakeClock
    ) -> None:
        engine, _ = started
        job = await engine.jobs.submit(Signature(task="record", args=["in time"], expires=clock.now() + 10))
        done = await engine.jobs.wait(job.id, timeout=5)
        assert done.state == JobState.SUCCESS and ORDER == ["in time"]

    async def test_an_expired_job_does_not_hold_the_queue(
        self, started: tuple[Engine, InMemoryJobRepository], clock: FakeClock
    ) -> None:
        engine, repo = started
        now = clock.now()
        stale = [
            Job(id=f"stale-{i}", task="record", args=[f"stale-{i}"], priority=5, due_at=now, created_at=now)
            for i in range(3)
        ]
        stale = [job.moved_to(JobState.PENDING, options=CallOptions(expires=now - 1)) for job in stale]
        await repo.commit(Commit(jobs=stale))  # queued before the engine looked, already expired
        fresh = await engine.jobs.submit(Signature(task="record", args=["fresh"]))
        engine.dispatcher.wake()
        assert (await engine.jobs.wait(fresh.id, timeout=5)).state == JobState.SUCCESS
        for job in stale:
            done = await engine.jobs.wait(job.id, timeout=5)
            assert isinstance(done, Job) and expired(done)
        assert ORDER == ["fresh"]

    async def test_a_job_claimed_in_time_but_launched_late_never_runs(
        self, started: tuple[Engine, InMemoryJobRepository], clock: FakeClock
    ) -> None:
        engine, repo = started
        pending = Job(id="slow-claim", task="record", args=["ran"], due_at=clock.now(), created_at=clock.now())
        pending = pending.moved_to(JobState.PENDING, options=CallOptions(expires=clock.now() + 1))
        claimed = engine.dispatcher.claim_new(pending)
        assert claimed is not None
        await repo.commit(Commit(jobs=[claimed]))
        clock.advance(2)
        engine.dispatcher.launch_claimed(claimed)
        done = await engine.jobs.wait("slow-claim", timeout=5)
        assert isinstance(done, Job) and expired(done) and ORDER == []

    async def test_a_lost_job_recovered_after_it_expired_is_not_run_again(
        self, started: tuple[Engine, InMemoryJobRepository], clock: FakeClock
    ) -> None:
        engine, repo = started
        job = await test_services.leave_running(
            repo,
            await engine.jobs.submit(Signature(task="record", args=["twice"], countdown=1, expires=clock.now() + 5)),
        )
        assert job.state == JobState.STARTED
        clock.advance(120)  # its lease (60 s) and its expiry have both passed
        await engine.maintenance.run_once()
        engine.dispatcher.wake()
        done = await engine.jobs.wait(job.id, timeout=5)
        assert isinstance(done, Job) and expired(done) and ORDER == []

    async def test_an_expired_chain_step_ends_its_workflow_revoked(
        self, started: tuple[Engine, InMemoryJobRepository], clock: FakeClock
    ) -> None:
        engine, _ = started
        workflow = await engine.jobs.submit_canvas(
            Chain(
                steps=[
                    Signature(task="record", args=["first"], countdown=30),
                    Signature(task="record", args=["second"], immutable=True, expires=clock.now() + 10),
                ]
            )
        )
        clock.advance(31)
        engine.dispatcher.wake()
        done = await engine.jobs.wait(workflow.id, timeout=5)
        assert done.state == JobState.REVOKED
        assert ORDER == ["first"]
        steps = await engine.jobs.workflow_jobs(workflow.id)
        assert [step.state for step in steps] == [JobState.SUCCESS, JobState.REVOKED] and expired(steps[1])

    async def test_an_expiry_out_of_range_is_refused(self, started: tuple[Engine, InMemoryJobRepository]) -> None:
        engine, _ = started
        with pytest.raises(InvalidSchedule, match="expires"):
            await engine.jobs.submit(Signature(task="record", args=["x"], expires=1e12))
