"""The dispatcher on fakes: Celery's ``Reject``, a retry's options for the next attempt, and the job trace."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.asyncio_runner import AsyncioRunner
from adapters.event_bus import InProcessEventBus
from adapters.memory_job_repository import InMemoryJobRepository
from application.callbacks import delivery_info
from application.engine import Engine, EngineSettings
from application.execution import Reject, ReplaceRequested, RetryOptions, RetryRequested, current_job
from application.registry import TaskDefinition, TaskRegistry
from domain.canvas import Signature
from domain.job import Job
from domain.states import JobState
from tests.unit.fakes import CountingIds, FakeClock

SEEN: list[dict[str, Any]] = []
"""What ``delivery_info`` each run of a task below saw (the request Celery's task would get)."""


def _seen() -> Job:
    context = current_job.get()
    assert context is not None
    SEEN.append(delivery_info(context.job))
    return context.job


def reject_then_succeed() -> str:
    if not _seen().options.redelivered:
        raise Reject(requeue=True)
    return "second-pass"


def reject_for_good() -> None:
    _seen()
    raise Reject("rejected", requeue=False)


def reject_retried() -> str:
    if _seen().attempts == 1:
        raise Reject("covered by autoretry_for")
    return "retried"


def retry_with_options() -> str:
    job = _seen()
    if job.attempts == 1:
        raise RetryRequested(
            None,
            countdown=0,
            options=RetryOptions(expires=60, priority=7, queue="q2", routing_key="rk2", headers={"h": 1}),
        )
    return "done"


def autoretried() -> str:
    if _seen().attempts == 1:
        raise ConnectionError("down")
    return "done"


def add(x: int, y: int) -> int:
    return x + y


def boom() -> None:
    raise ValueError("boom")


class RecordingTrace:
    """A :class:`application.ports.job_trace.JobTrace` that records what it is told."""

    def __init__(self) -> None:
        self.taken: list[str] = []
        self.done: list[tuple[str, Any, Any, Any, float]] = []

    def received(self, job: Job) -> None:
        self.taken.append(job.id)

    def finished(
        self,
        job: Job,
        outcome: Job | ReplaceRequested,
        *,
        value: Any = None,
        exc: BaseException | None = None,
        runtime: float = 0.0,
    ) -> None:
        state = outcome.state if isinstance(outcome, Job) else "REPLACED"
        self.done.append((job.id, state, value, exc, runtime))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def engine(clock: FakeClock) -> AsyncIterator[Engine]:
    SEEN.clear()
    registry = TaskRegistry()
    for name, fn in [
        ("reject_then_succeed", reject_then_succeed),
        ("reject_for_good", reject_for_good),
        ("retry_with_options", retry_with_options),
        ("add", add),
        ("boom", boom),
    ]:
        registry.register(TaskDefinition(name=name, fn=fn))
    registry.register(
        TaskDefinition(name="reject_retried", fn=reject_retried, autoretry_for=(Reject,), retry_kwargs={"countdown": 0})
    )
    registry.register(
        TaskDefinition(
            name="autoretried",
            fn=autoretried,
            autoretry_for=(ConnectionError,),
            retry_kwargs={"countdown": 0, "priority": 5, "queue": "slow", "expires": 30},
        )
    )
    built = Engine.assemble(
        repo=InMemoryJobRepository(),
        registry=registry,
        runner=AsyncioRunner(threads=2),
        bus=InProcessEventBus(),
        clock=clock,
        ids=CountingIds(),
        settings=EngineSettings(max_concurrent_tasks=2),
    )
    await built.start()
    yield built
    await built.stop()


async def finished(engine: Engine, task: str, **options: Any) -> Job:
    """Submit ``task`` and wait for its job to finish; the stored job."""
    job = await engine.jobs.submit(Signature(task=task, **options))
    await engine.jobs.wait(job.id, timeout=5)
    stored = await engine.repo.get(job.id)
    assert stored is not None
    return stored


class TestReject:
    async def test_requeue_runs_the_job_again_as_redelivered(self, engine: Engine) -> None:
        job = await finished(engine, "reject_then_succeed")
        assert job.state == JobState.SUCCESS and job.result == "second-pass"
        assert job.attempts == 1 and job.retries == 0, "a redelivery is not a retry (Celery's request.retries)"
        assert [seen["redelivered"] for seen in SEEN] == [False, True]

    async def test_without_requeue_the_job_fails_with_the_rejection(self, engine: Engine) -> None:
        job = await finished(engine, "reject_for_good")
        assert job.state == JobState.FAILURE and job.attempts == 1
        assert job.error is not None
        assert (job.error.type, job.error.module, job.error.args) == (
            "Reject",
            "application.execution",
            ["rejected", False],
        )

    async def test_an_autoretry_for_that_covers_it_retries_it(self, engine: Engine) -> None:
        job = await finished(engine, "reject_retried")
        assert job.state == JobState.SUCCESS and job.result == "retried" and job.attempts == 2

    def test_it_carries_celerys_reason_and_requeue(self) -> None:
        reject = Reject("why", requeue=True)
        assert (reject.reason, reject.requeue, reject.args) == ("why", True, ("why", True))
        assert repr(reject) == "reject requeue=True: why"


class TestRetryOptions:
    async def test_the_next_attempt_runs_with_the_options_the_retry_gave(
        self, engine: Engine, clock: FakeClock
    ) -> None:
        job = await finished(engine, "retry_with_options", priority=1, queue="q1")
        assert job.state == JobState.SUCCESS and job.attempts == 2
        assert job.priority == 7
        assert (job.options.queue, job.options.routing_key, job.options.headers) == ("q2", "rk2", {"h": 1})
        assert job.options.expires == clock.now() + 60
        assert SEEN[1] == {
            "exchange": "",
            "routing_key": "rk2",
            "priority": 7,
            "redelivered": False,
            "queue": "q2",
        }  # a retry is a new message

    async def test_autoretry_applies_the_options_of_retry_kwargs(self, engine: Engine, clock: FakeClock) -> None:
        job = await finished(engine, "autoretried")
        assert job.state == JobState.SUCCESS and job.priority == 5
        assert job.options.queue == "slow" and job.options.expires == clock.now() + 30


class TestTrace:
    async def test_it_is_told_of_each_job_taken_and_what_it_did(self, engine: Engine) -> None:
        recording = RecordingTrace()
        engine.dispatcher.trace = recording
        ok = await finished(engine, "add", args=[2, 3])
        failed = await finished(engine, "boom")
        rejected = await finished(engine, "reject_then_succeed")
        assert recording.taken == [ok.id, failed.id, rejected.id, rejected.id]
        by_job = [(job_id, state, value, type(exc).__name__) for job_id, state, value, exc, _ in recording.done]
        assert by_job == [
            (ok.id, JobState.SUCCESS, 5, "NoneType"),
            (failed.id, JobState.FAILURE, None, "ValueError"),
            (rejected.id, JobState.PENDING, None, "Reject"),
            (rejected.id, JobState.SUCCESS, "second-pass", "NoneType"),
        ]
        assert all(runtime >= 0 for *_, runtime in recording.done)

    async def test_without_one_nothing_is_told(self, engine: Engine) -> None:
        assert engine.dispatcher.trace is None
        assert (await finished(engine, "add", args=[1, 1])).result == 2
