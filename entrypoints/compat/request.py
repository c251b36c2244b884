"""``self.request``: what a running task is told about its call, and which call is running.

It exists apart from the task class because the engine's side needs it too, with no task object
at hand: the signals (``task_revoked`` ...) build a job's :class:`Request` with :func:`request_of`,
the eager runner an eager call's with :func:`eager_request`, and the traces name this engine's
:data:`HOSTNAME`. :func:`active_call` finds the innermost running call, eager or in the engine.
"""

from __future__ import annotations

import datetime
import socket
from typing import Any

import msgspec

from application.callbacks import delivery_info
from application.execution import JobContext, current_job
from application.registry import TaskDefinition
from domain.job import Job
from entrypoints.compat.eager import EagerFrame, innermost_frame


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """What ``self.request`` tells a running task about its job, with Celery's field names.

    ``eta`` is None unless the job was scheduled (countdown, ETA or a retry's delay); ``root_id``,
    ``parent_id`` and ``group`` are Celery's; ``delivery_info`` holds the queue, routing key and
    priority; ``hostname`` names this engine; ``properties`` the message properties (``priority``,
    ``correlation_id``, and ``app_id``, ``reply_to`` ... when given at submission);
    ``replaced_task_nesting`` counts the ``self.replace`` levels above the job; ``argsrepr`` /
    ``kwargsrepr`` are what the log lines show for the arguments when given. ``workflow_id`` is this
    engine's own.
    """

    id: str | None
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    retries: int = 0
    eta: str | None = None
    expires: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    headers: dict[str, Any] | None = None
    delivery_info: dict[str, Any] = msgspec.field(default_factory=dict)
    hostname: str = ""
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False
    workflow_id: str | None = None
    called_directly: bool = False
    is_eager: bool = False
    properties: dict[str, Any] = msgspec.field(default_factory=dict)
    replaced_task_nesting: int = 0
    argsrepr: str | None = None
    kwargsrepr: str | None = None

    @property
    def timelimit(self) -> tuple[float | None, float | None]:
        """Celery's ``(time_limit, soft_time_limit)`` pair."""
        return (self.time_limit, self.soft_time_limit)


def request_of(job: Job) -> Request:
    """The Celery request of a running job."""
    options = job.options
    return Request(
        id=job.id,
        task=job.task,
        args=job.args,
        kwargs=job.kwargs,
        retries=job.retries,
        eta=_iso(options.eta),
        expires=_iso(options.expires),
        root_id=options.root_id or job.id,
        parent_id=options.parent_id,
        group=options.group_id,
        group_index=options.group_index,
        headers=options.headers,
        delivery_info=delivery_info(job),
        hostname=HOSTNAME,
        time_limit=job.time_limit,
        soft_time_limit=options.soft_time_limit,
        ignore_result=options.ignore_result,
        workflow_id=job.workflow_id,
        properties={"priority": job.priority, "correlation_id": job.id, **(options.properties or {})},
        replaced_task_nesting=options.replaced_task_nesting,
        argsrepr=options.argsrepr,
        kwargsrepr=options.kwargsrepr,
    )


HOSTNAME = f"geekblog@{socket.gethostname()}"
"""What ``request.hostname`` says: the engine runs tasks in its own process."""


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


def eager_request(
    sig: Any,
    task_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    retries: int,
    group_id: str | None,
    group_index: int | None,
    definition: TaskDefinition,
) -> Request:
    """The request of an eager call (Celery's ``apply``): ``is_eager``, and as parent the task running
    when it was applied (eagerly or in the engine), whose root it shares; else it is its own root."""
    outer = _active_request()
    parent_id = outer.id if outer is not None else None
    root_id = (outer.root_id or task_id) if outer is not None else task_id
    return Request(
        id=task_id,
        task=sig.task,
        args=args,
        kwargs=kwargs,
        retries=retries,
        root_id=root_id,
        parent_id=parent_id,
        group=group_id,
        group_index=group_index,
        headers=sig.headers,
        delivery_info={
            "is_eager": True,
            "exchange": None,
            "routing_key": sig.routing_key,
            "priority": sig.priority,
        },
        hostname=HOSTNAME,
        time_limit=sig.time_limit if sig.time_limit is not None else definition.time_limit,
        soft_time_limit=sig.soft_time_limit if sig.soft_time_limit is not None else definition.soft_time_limit,
        ignore_result=bool(sig.ignore_result),
        is_eager=True,
    )


class ActiveCall:
    """The call of a task running in this context: its request, its retry limit, whether eager."""

    __slots__ = ("context", "frame", "max_retries", "request")

    def __init__(
        self, request: Request, max_retries: int | None, frame: EagerFrame | None, context: JobContext | None
    ) -> None:
        self.request = request
        self.max_retries = max_retries
        self.frame = frame
        self.context = context


def active_call(name: str | None) -> ActiveCall | None:
    """The innermost running call (of the task ``name``, unless None): an eager one or an engine job's."""
    frame = innermost_frame()
    if frame is not None:
        if name is None or frame.request.task == name:
            return ActiveCall(frame.request, frame.max_retries, frame, None)
        return None
    context = current_job.get()
    if context is None or (name is not None and context.job.task != name):
        return None
    return ActiveCall(request_of(context.job), context.job.max_retries, None, context)


def _active_request() -> Request | None:
    active = active_call(None)
    return None if active is None else active.request


def running_context(name: str | None) -> JobContext:
    """The engine job running in this context; RuntimeError (naming the task) outside one."""
    context = current_job.get()
    if context is None:
        raise RuntimeError(f"{name}: this call is only possible inside a running job")
    return context
