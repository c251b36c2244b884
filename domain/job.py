"""A job: one run of a registered task, with everything needed to run, retry and report it."""

from __future__ import annotations

from typing import Any, Final

import msgspec

from domain.canvas import Canvas
from domain.errors import InvalidTransition
from domain.queues import effective_queue, rate_interval
from domain.states import JobState, can_transition


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job or workflow failed: the exception's type name, its message and the traceback text.

    ``module`` is the exception class's ``__module__`` and ``args`` its arguments as JSON (an argument
    that is not JSON is kept as its ``repr()``), as Celery's JSON serializer stores them, so the caller
    can rebuild the same exception. Both are None in errors stored before they existed.
    """

    type: str
    message: str
    traceback: str | None = None
    module: str | None = None
    args: list[Any] | None = None


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """The latest ``update_state(state=..., meta=...)`` of a running job (``PROGRESS`` by convention)."""

    state: str
    meta: Any = None


class CallOptions(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Celery's per-call options and request fields that a job carries besides what schedules it.

    ``eta``: the ETA asked for (None when the job was due at once; Celery's ``request.eta``).
    ``expires``: epoch time after which the job is revoked instead of started. ``parent_id`` and
    ``root_id`` are Celery's: the task whose completion (or code) sent this one, and the first task
    of the whole canvas (not :attr:`Job.root_id`, the outermost workflow). ``group_id`` is the group
    the job is a member of. ``link``/``link_error`` are applied when the job succeeds or fails, in
    the transaction that stores that outcome. ``errback_of`` marks a new-style errback: its first
    three arguments are the failed request, its exception and traceback as JSON (see README).
    ``replaced_task_nesting`` counts the ``self.replace`` levels above the job; ``properties`` are
    Celery's message properties given at submission (``app_id`` ...); ``argsrepr``/``kwargsrepr``
    stand for the arguments in log lines. ``redelivered``: the job went back to the queue unfinished
    (a ``Reject(requeue=True)``, a lost worker), as a broker redelivers an unacknowledged message.
    ``schedule`` and ``tick``: the periodic schedule that created the job and the tick it stands for
    (ISO-8601, UTC; the time of the request for a run on request).
    ``concurrency_key``/``concurrency_limit``: at most that many STARTED jobs with the key at once (1 when
    no limit is given); ``rate_limit``: the task's Celery rate limit (``"10/m"``) when the job was made.
    ``idempotency_key``: the key the job was submitted under (HTTP ``Idempotency-Key``, ``idempotency_key=``).
    """

    eta: float | None = None
    expires: float | None = None
    soft_time_limit: float | None = None
    queue: str | None = None
    routing_key: str | None = None
    headers: dict[str, Any] | None = None
    ignore_result: bool = False
    shadow: str | None = None
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    group_index: int | None = None
    link: list[Canvas] = msgspec.field(default_factory=list)
    link_error: list[Canvas] = msgspec.field(default_factory=list)
    errback_of: str | None = None
    replaced_task_nesting: int = 0
    properties: dict[str, Any] | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    redelivered: bool = False
    schedule: str | None = None
    tick: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit: str | None = None
    idempotency_key: str | None = None


NO_OPTIONS: Final = CallOptions()


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One run of a task. Immutable: every change is a new value written through the repository.

    ``attempts`` counts the times the job was started; ``attempts - 1`` is Celery's ``request.retries``.
    ``due_at`` is when it may start (now, or its countdown/ETA). ``lease_owner``/``lease_expires_at``
    say which engine runs it and until when that claim holds. ``waiting_on`` is the id of the workflow
    that replaced it (``self.replace``): the job finishes when that workflow does. ``root_id`` is the
    outermost workflow it belongs to, through any replacements (None for a lone job).
    """

    id: str
    task: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    state: JobState = JobState.PENDING
    priority: int = 0
    due_at: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    max_retries: int | None = 3
    time_limit: float | None = None
    retry_on_worker_lost: bool = True
    result: Any = None
    error: ErrorInfo | None = None
    progress: Progress | None = None
    workflow_id: str | None = None
    node: str | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    waiting_on: str | None = None
    root_id: str | None = None
    options: CallOptions = NO_OPTIONS

    @property
    def queue(self) -> str:
        """The named queue the job waits in (see :func:`domain.queues.effective_queue`)."""
        return effective_queue(self.options.queue, self.options.routing_key)

    @property
    def concurrency(self) -> tuple[str, int] | None:
        """``(key, limit)`` when the job has a concurrency key: at most ``limit`` such jobs STARTED at once."""
        key = self.options.concurrency_key
        return None if key is None else (key, self.options.concurrency_limit or 1)

    @property
    def rate_interval(self) -> float | None:
        """Seconds between two starts of this task's jobs (its ``rate_limit``, on every engine); None: no limit."""
        return None if self.options.rate_limit is None else rate_interval(self.options.rate_limit)

    @property
    def retries(self) -> int:
        """Retries so far, as Celery's ``request.retries`` counts them."""
        return max(self.attempts - 1, 0)

    def moved_to(self, target: JobState, **changes: Any) -> Job:
        """This job in state ``target`` with ``changes`` applied; refuses transitions the rules forbid."""
        if target != self.state and not can_transition(self.state, target):
            raise InvalidTransition(self.id, self.state, target)
        return msgspec.structs.replace(self, state=target, **changes)

    def started(self, *, owner: str, now: float, lease_until: float) -> Job:
        """Claimed by ``owner``: STARTED, attempt counted, leased until ``lease_until``."""
        return self.moved_to(
            JobState.STARTED,
            started_at=now,
            attempts=self.attempts + 1,
            lease_owner=owner,
            lease_expires_at=lease_until,
            progress=None,
        )

    def succeeded(self, result: Any, *, now: float) -> Job:
        return self.moved_to(JobState.SUCCESS, result=result, error=None, finished_at=now, **_NO_LEASE)

    def failed(self, error: ErrorInfo, *, now: float, state: JobState = JobState.FAILURE) -> Job:
        return self.moved_to(state, error=error, finished_at=now, **_NO_LEASE)

    def retrying(
        self, error: ErrorInfo, *, due_at: float, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> Job:
        """Back in the queue after a failed attempt, to start again at ``due_at`` (Celery's ``request.eta``),
        with new ``args``/``kwargs`` when the retry gives them."""
        return self.moved_to(
            JobState.RETRY,
            error=error,
            due_at=due_at,
            args=self.args if args is None else args,
            kwargs=self.kwargs if kwargs is None else kwargs,
            options=msgspec.structs.replace(self.options, eta=due_at),
            **_NO_LEASE,
        )

    def redelivered(self, *, now: float) -> Job:
        """Back to PENDING unfinished, as a broker redelivers a message (``Reject(requeue=True)``): its
        attempt is not counted (Celery's ``request.retries`` is unchanged) and it is marked redelivered."""
        return msgspec.structs.replace(
            self.requeued(now=now),
            attempts=max(self.attempts - 1, 0),
            options=msgspec.structs.replace(self.options, redelivered=True),
        )

    def requeued(self, *, now: float) -> Job:
        """Back to PENDING: a lost worker's job, or a finished job retried on request."""
        return self.moved_to(
            JobState.PENDING, due_at=now, started_at=None, finished_at=None, waiting_on=None, **_NO_LEASE
        )

    def waiting_for(self, workflow_id: str) -> Job:
        """Replaced by a workflow: still STARTED, no longer leased, finished when that workflow is."""
        return msgspec.structs.replace(self, waiting_on=workflow_id, **_NO_LEASE)


_NO_LEASE: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
