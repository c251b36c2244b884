"""Running one job's task code and turning what it did into the job's next state.

The dispatcher decides *when* a job runs and stores what happened; this module decides *what*
happened: success (the result checked for storage), a retry (with its countdown and options), a
rejection, a failure, a revocation, a time limit, or a replacement canvas.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from application.execution import (
    NO_RETRY_OPTIONS,
    JobCancelled,
    JobContext,
    Reject,
    ReplaceRequested,
    RetryOptions,
    RetryRequested,
    SoftTimeLimitExceeded,
    current_job,
)
from application.outcomes import TimeLimitExceeded, error_info, revoked_error
from application.ports import Clock, Runner
from application.registry import TaskDefinition, TaskRegistry
from domain.errors import DomainError, NotJsonValue, ResultNotStorable, ResultTooLarge, UnknownTask
from domain.job import ErrorInfo, Job
from domain.json_values import ensure_json, json_size
from domain.limits import Limits
from domain.states import JobState


class TaskRun:
    """Runs a job's task in the runner, under its time limits, in its :class:`JobContext`, and gives the
    job's next state. The JSON size of each accepted result is kept until :meth:`pop_result_size`."""

    def __init__(
        self,
        *,
        runner: Runner,
        registry: TaskRegistry,
        clock: Clock,
        limits: Callable[[], Limits],
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._runner = runner
        self._registry = registry
        self._clock = clock
        self._current_limits = limits
        self._random_fraction = random_fraction
        self._result_sizes: dict[str, int] = {}

    @property
    def _limits(self) -> Limits:
        return self._current_limits()

    def pop_result_size(self, job_id: str) -> int | None:
        """The JSON size of the result the job's run gave, measured once (None: not measured)."""
        return self._result_sizes.pop(job_id, None)

    async def run(self, job: Job, context: JobContext) -> tuple[Job | ReplaceRequested, Any, BaseException | None]:
        """The job's next state (or a replacement), the task's return value and the exception it raised."""
        definition = self._registry.find(job.task)
        if definition is None:
            unknown = UnknownTask(job.task)
            return job.failed(error_info(unknown), now=self._clock.now()), None, unknown
        token = current_job.set(context)
        try:
            result = await self._run_within_limit(job, definition, context)
            refused = self._refuse_result(job, result)
            if refused is not None:
                return job.failed(error_info(refused), now=self._clock.now()), None, refused
            value = result
            if job.options.ignore_result and job.workflow_id is None and not job.options.link:
                result = None  # Celery stores no result; a workflow's step or a link still needs it
            return job.succeeded(result, now=self._clock.now()), value, None
        except ReplaceRequested as replace:
            return replace, None, None
        except RetryRequested as retry:
            return self._retry_or_fail(job, definition, retry.exc, retry.countdown, retry), None, retry
        except Reject as reject:  # an ``autoretry_for`` that covers it retries it, as in Celery
            if definition.autoretry_for and isinstance(reject, definition.autoretry_for):
                return self._failed_or_autoretried(job, definition, reject), None, reject
            return self._rejected(job, reject), None, reject
        except JobCancelled as cancelled:
            return job.failed(revoked_error(job), now=self._clock.now(), state=JobState.REVOKED), None, cancelled
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a task's SystemExit or KeyboardInterrupt fails that job only
            return self._failed_or_autoretried(job, definition, exc), None, exc
        finally:
            current_job.reset(token)

    def _refuse_result(self, job: Job, result: object) -> DomainError | None:
        """Why ``result`` cannot be the job's stored result (not JSON, an integer out of range, too
        large), or None; its JSON size is kept for the workflow's total. No retry follows: running the
        task again would give the same result."""
        try:
            ensure_json(result, f"the result of {job.task}")
            size = json_size(result)
        except NotJsonValue as exc:
            return ResultNotStorable(str(exc))
        try:
            self._limits.check_result(size, f"the result of {job.task} (job {job.id})")
        except ResultTooLarge as exc:
            return exc
        self._result_sizes[job.id] = size
        return None

    def _rejected(self, job: Job, reject: Reject) -> Job:
        """Celery's ``Reject``: with ``requeue`` the job is queued again at once, redelivered (the next
        run sees ``delivery_info["redelivered"]`` and the same ``request.retries``); without, it fails
        with the rejection."""
        now = self._clock.now()
        if reject.requeue:
            return job.redelivered(now=now)
        return job.failed(error_info(reject), now=now)

    async def _run_within_limit(self, job: Job, definition: TaskDefinition, context: JobContext) -> object:
        """The task's return value; :class:`TimeLimitExceeded` when it runs past ``job.time_limit``.

        Past ``soft_time_limit`` an async task is cancelled and fails with :class:`SoftTimeLimitExceeded`;
        a sync task gets that exception at its next check (``update_state``, ``is_cancelled``).
        """
        soft = job.options.soft_time_limit
        soft_timer = None
        if soft is not None and not definition.is_async:
            soft_timer = asyncio.get_running_loop().call_later(soft, _reach_soft_limit, context)
        run = self._runner.run(definition.fn, job.args, job.kwargs, is_async=definition.is_async)
        if soft is not None and definition.is_async:
            run = _within_soft_limit(run, soft, job)
        try:
            if job.time_limit is None:
                return await run
            try:
                async with asyncio.timeout(job.time_limit) as scope:
                    return await run
            except TimeoutError:
                if not scope.expired():
                    raise  # the task's own TimeoutError
                context.cancel("time limit exceeded")  # a sync task's thread stops at its next check
                raise TimeLimitExceeded(f"{job.task} ran past its time limit of {job.time_limit} s") from None
        finally:
            if soft_timer is not None:
                soft_timer.cancel()

    def _failed_or_autoretried(self, job: Job, definition: TaskDefinition, exc: BaseException) -> Job:
        if definition.autoretry_for and isinstance(exc, definition.autoretry_for):
            autoretry = definition.autoretry(exc)
            return self._retry_or_fail(job, definition, exc, autoretry.countdown, autoretry)
        return job.failed(error_info(exc), now=self._clock.now())

    def _retry_or_fail(
        self,
        job: Job,
        definition: TaskDefinition,
        exc: BaseException | None,
        countdown: float | None,
        retry: RetryRequested | None,
    ) -> Job:
        """The job queued again for its next attempt, or failed once its retries are spent (a
        ``max_retries`` of None retries for ever, as in Celery)."""
        limit = retry.max_retries if retry is not None and retry.max_retries_given else job.max_retries
        now = self._clock.now()
        if limit is not None and job.retries >= limit:
            if exc is None:
                exc = MaxRetriesExceededError(f"{job.task} exceeded its {limit} retries (job {job.id})")
            return job.failed(error_info(exc), now=now)
        reason = error_info(exc) if exc is not None else ErrorInfo(type="Retry", message="retry requested")
        if retry is not None and retry.eta is not None:
            due_at = retry.eta
        else:
            due_at = now + definition.retry_policy.delay(
                job.retries, countdown=countdown, random_fraction=self._random_fraction()
            )
        args = retry.args_ if retry is not None else None
        kwargs = retry.kwargs_ if retry is not None else None
        retrying = job.retrying(reason, due_at=due_at, args=args, kwargs=kwargs)
        return retrying if retry is None else _with_retry_options(retrying, retry.options, now)


def _with_retry_options(job: Job, options: RetryOptions, now: float) -> Job:
    """``job``, queued for its next attempt, with what the retry changed (Celery sends the retry as a
    new message with those options)."""
    if options == NO_RETRY_OPTIONS:
        return job
    changes: dict[str, Any] = {
        name: value for name in ("queue", "routing_key", "headers") if (value := getattr(options, name)) is not None
    }
    if options.expires is not None:
        changes["expires"] = now + options.expires
    if changes:
        job = msgspec.structs.replace(job, options=msgspec.structs.replace(job.options, **changes))
    if options.priority is not None:
        job = msgspec.structs.replace(job, priority=options.priority)
    return job


def _reach_soft_limit(context: JobContext) -> None:
    """Past a sync task's soft limit: SoftTimeLimitExceeded inside it now if its runner can raise it
    there (as Celery's signal does), else at its next check."""
    if not context.interrupt(SoftTimeLimitExceeded):
        context.soft_limit_reached = True


async def _within_soft_limit(run: Awaitable[object], soft: float, job: Job) -> object:
    try:
        async with asyncio.timeout(soft) as scope:
            return await run
    except TimeoutError:
        if not scope.expired():
            raise
        raise SoftTimeLimitExceeded(f"{job.task} ran past its soft time limit of {soft} s") from None


class MaxRetriesExceededError(Exception):
    """A task asked to retry once more than its ``max_retries`` allow."""
