"""What a running task can ask of the engine, and the signals it raises to ask for a retry or a replacement."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Final

import msgspec

from domain.canvas import Canvas
from domain.job import Job, Progress
from domain.json_values import ensure_json

#: The cancel reason of jobs interrupted by a shutdown: they keep their lease and are recovered later.
ENGINE_STOPPING = "engine stopped"


class JobCancelled(BaseException):
    """Raised inside a task whose job was revoked or ran past its time limit.

    A BaseException, so that a task's ``except Exception`` does not swallow it.
    """


_UNSET: Any = object()


class SoftTimeLimitExceeded(Exception):
    """Raised inside a task that ran past its ``soft_time_limit`` (Celery's exception of that name).

    A sync task gets it in its thread at once (at its next Python instruction: after a blocking C call
    such as ``time.sleep`` returns), so it can catch it and clean up; an async task is cancelled and
    fails with it."""


class RetryOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What a retry changes for the next attempt (the options of Celery's ``self.retry(**options)``):
    ``expires`` (seconds from the retry: the next attempt is revoked unrun if it has not started by
    then), ``priority``, ``queue``, ``routing_key``, ``headers`` (replacing the job's); None leaves
    the job's own."""

    expires: float | None = None
    priority: int | None = None
    queue: str | None = None
    routing_key: str | None = None
    headers: dict[str, Any] | None = None


NO_RETRY_OPTIONS: Final = RetryOptions()
RETRY_OPTION_NAMES: Final = ("expires", "priority", "queue", "routing_key", "headers")


class RetryRequested(Exception):
    """A task asks to run again later (``self.retry``); ``exc`` is why, ``countdown`` or ``eta`` when.

    ``max_retries`` overrides the task's (None: for ever, as in Celery; unset: the job's own);
    ``args``/``kwargs``, when given, are what the next attempt runs with, and ``options`` what else
    changes for it (:class:`RetryOptions`).
    """

    def __init__(
        self,
        exc: BaseException | None = None,
        countdown: float | None = None,
        max_retries: int | None = _UNSET,
        *,
        eta: float | None = None,
        args: list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: RetryOptions = NO_RETRY_OPTIONS,
    ):
        super().__init__(f"retry requested: {exc!r}" if exc else "retry requested")
        self.exc = exc
        self.countdown = countdown
        self.eta = eta
        self.max_retries_given = max_retries is not _UNSET
        self.max_retries: int | None = None if max_retries is _UNSET else max_retries
        self.args_ = args
        self.kwargs_ = kwargs
        self.options = options


class Reject(Exception):
    """A task rejects its job (Celery's ``celery.exceptions.Reject``).

    ``requeue=True``: the job goes back to the queue and runs again (redelivered: the next run's
    ``request.delivery_info["redelivered"]`` is True and its ``request.retries`` unchanged), as often
    as the task rejects it, as a broker redelivers a requeued message; ``requeue=False``: the job
    fails with this exception.
    """

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        self.reason = reason
        self.requeue = requeue
        super().__init__(reason, requeue)

    def __repr__(self) -> str:
        return f"reject requeue={self.requeue}: {self.reason}"


class ReplaceRequested(Exception):
    """A task replaces itself with a canvas (``self.replace``): the job's result becomes the canvas's."""

    def __init__(self, canvas: Canvas):
        super().__init__("replaced by a canvas")
        self.canvas = canvas


ProgressSink = Callable[[Job, Progress], Awaitable[None]]


class JobContext:
    """One job's execution: its identity, its cancellation flag, and progress reporting.

    Lives in :data:`current_job` while the task runs (also in the runner's thread, which runs in a
    copy of the context), so task code reaches it without being passed anything.
    """

    def __init__(self, job: Job, loop: asyncio.AbstractEventLoop, report: ProgressSink) -> None:
        self.job = job
        self.loop = loop
        self._report = report
        self._cancelled = False  # set on the loop, read by the task's thread: one attribute, no lock needed
        self.cancel_reason = "revoked"
        self.soft_limit_reached = False
        self._interrupt: Callable[[type[BaseException]], bool] | None = None

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self, reason: str) -> None:
        self.cancel_reason = reason
        self._cancelled = True

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if the job was revoked or timed out, :class:`SoftTimeLimitExceeded`
        (once) when it ran past its soft time limit; sync tasks call this to stop."""
        if self._cancelled:
            raise JobCancelled(self.cancel_reason)
        if self.soft_limit_reached:
            self.soft_limit_reached = False
            raise SoftTimeLimitExceeded(f"{self.job.task} ran past its soft time limit")

    async def update_state(self, state: str, meta: Any = None) -> None:
        """Publish and store progress (``update_state``); stops a cancelled job instead."""
        self.check_cancelled()
        ensure_json(meta, "update_state meta")
        await self._report(self.job, Progress(state=state, meta=meta))
        self.check_cancelled()

    def on_loop_thread(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    def allow_interrupt(self, interrupt: Callable[[type[BaseException]], bool] | None) -> None:
        """Set (or clear, with None) how to raise an exception inside the task's code where it runs
        now: the runner sets it for a sync task's thread while its function runs."""
        self._interrupt = interrupt

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` inside the running task's code at once, if its runner can; whether it did."""
        interrupt = self._interrupt
        return interrupt is not None and interrupt(exc_type)


current_job: ContextVar[JobContext | None] = ContextVar("current_job", default=None)
