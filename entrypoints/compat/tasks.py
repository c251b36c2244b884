"""``@create_compatible_task``: Celery's task decorator, and the task object bound tasks receive as ``self``."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import inspect
import socket
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import msgspec

from application.callbacks import delivery_info
from application.execution import (
    ENGINE_STOPPING,
    JobCancelled,
    JobContext,
    ReplaceRequested,
    RetryRequested,
    current_job,
)
from application.registry import TaskDefinition, TaskRegistry
from domain.job import Job
from domain.retry_policy import RetryPolicy
from entrypoints.compat import binding
from entrypoints.compat.canvas import (
    ImproperlyConfigured,
    Signature,
    chain,
    chunks,
    maybe_signature,
    xmap,
    xstarmap,
)
from entrypoints.compat.results import AsyncResult

F = TypeVar("F", bound=Callable[..., Any])

#: Tasks declared with the decorator register here; engines built by the container use it.
default_registry = TaskRegistry()


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """What ``self.request`` tells a running task about its job, with Celery's field names.

    ``eta`` is None unless the job was scheduled (countdown, ETA or a retry's delay); ``root_id``,
    ``parent_id`` and ``group`` are Celery's; ``delivery_info`` holds the queue, routing key and
    priority; ``hostname`` names this engine. ``workflow_id`` is this engine's own.
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
        root_id=options.root_id,
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
        properties={"priority": job.priority, "correlation_id": job.id},
    )


HOSTNAME = f"geekblog@{socket.gethostname()}"
"""What ``request.hostname`` says: the engine runs tasks in its own process."""


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


class Task:
    """A registered task. Call it to run the function here; ``delay``/``apply_async`` to queue a job."""

    def __init__(self, fn: Callable[..., Any], definition: TaskDefinition, bind: bool) -> None:
        self.run = fn
        self.name = definition.name
        self.definition = definition
        self.bind = bind
        self.max_retries = definition.max_retries
        self.defaults: dict[str, Any] = {}
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", definition.name)
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(self, *args, **kwargs) if self.bind else self.run(*args, **kwargs)

    # -- queueing ---------------------------------------------------------------------------
    def s(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        return Signature(self.name, args, kwargs, immutable=True)

    def signature(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        immutable: bool = False,
        **options: Any,
    ) -> Signature:
        return Signature(self.name, args, kwargs, options=options, immutable=immutable)

    subtask = signature

    def map(self, it: Any) -> Any:
        """Celery's ``task.map(it)``: one job calling this task on each item."""
        return xmap(self, it)

    def starmap(self, it: Any) -> Any:
        """Celery's ``task.starmap(it)``: one job calling this task with each item's arguments."""
        return xstarmap(self, it)

    def chunks(self, it: Any, n: int) -> Any:
        """Celery's ``task.chunks(it, n)``: ``starmap`` jobs of ``n`` items each, as a group."""
        return chunks(self, it, n)

    def delay(self, *args: Any, **kwargs: Any) -> Awaitable[AsyncResult] | AsyncResult:
        """Queue a job of this task; awaitable on the loop, blocking from a worker thread."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: tuple[Any, ...] | list[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Awaitable[AsyncResult] | AsyncResult:
        """Queue a job, with Celery's options (see the README): ``countdown``, ``eta``, ``expires``,
        ``task_id``, ``priority``, ``queue``, ``headers``, ``link``, ``link_error`` ...; an option this
        engine does not implement raises TypeError."""
        result: Any = Signature(self.name, args or (), kwargs, options={**self.defaults, **options}).apply_async()
        return result

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id)

    # -- inside a running job ------------------------------------------------------------------
    @property
    def request(self) -> Request:
        context = current_job.get()
        if context is None or context.job.task != self.name:
            return Request(id=None, task=self.name, args=[], kwargs={}, called_directly=True)
        return request_of(context.job)

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **_: Any
    ) -> Awaitable[None] | None:
        """Report progress (``state`` defaults to PROGRESS); awaitable in async tasks, blocking in sync ones.

        In an async task the update is scheduled at once, so a call that is not awaited still lands.
        Raises inside the task when its job was revoked, which is how a sync task gets cancelled.
        With ``task_id`` naming another job (running, as Celery's backend would store it for any
        id), that job's progress is set instead.
        """
        context = current_job.get()
        if task_id is not None and (context is None or task_id != context.job.id):
            target = task_id

            async def update_other(engine: Any) -> None:
                await engine.jobs.report_progress(target, state or "PROGRESS", meta)

            return binding.call(update_other)
        context = _running_context(self.name)
        context.check_cancelled()
        update = context.update_state(state or "PROGRESS", meta)
        if context.on_loop_thread():
            return asyncio.ensure_future(update)
        try:
            future = asyncio.run_coroutine_threadsafe(update, context.loop)
        except RuntimeError:  # the engine's loop is gone: this job is not running any more
            update.close()
            raise JobCancelled(ENGINE_STOPPING) from None
        future.result()
        return None

    update_state_with_db = update_state

    def is_cancelled(self) -> bool:
        """Whether this job was revoked or timed out (a sync task should return soon)."""
        context = current_job.get()
        return context is not None and context.cancelled

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: Any = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> RetryRequested:
        """Ask to run this job again later (``raise self.retry(exc=e, countdown=5)`` as in Celery).

        ``args``/``kwargs`` replace the job's for the next attempt; ``eta`` (a datetime or epoch
        seconds) or ``countdown`` says when; ``max_retries`` overrides the task's for this decision.
        Of the other options of Celery's retry, ``expires`` and ``priority`` are refused (TypeError)
        rather than dropped.
        """
        _running_context(self.name)
        unknown = set(options) - {"queue", "routing_key"}
        if unknown:
            raise TypeError(f"retry() does not support the option(s): {', '.join(sorted(unknown))}")
        retry_args = None if args is None else list(args)
        retry_kwargs = None if kwargs is None else dict(kwargs)
        when = _epoch(eta)
        if max_retries is None:  # Celery: None means the task's own max_retries
            raise RetryRequested(exc, countdown, eta=when, args=retry_args, kwargs=retry_kwargs)
        raise RetryRequested(exc, countdown, max_retries, eta=when, args=retry_args, kwargs=retry_kwargs)

    def replace(self, sig: Any) -> None:
        """Finish this job with the result of ``sig`` (a signature or a whole canvas) instead."""
        _running_context(self.name)
        sig = maybe_signature(sig)
        if isinstance(sig, chain) and not sig.tasks:
            raise ImproperlyConfigured("Cannot replace with an empty chain")
        raise ReplaceRequested(sig.to_canvas())


def _epoch(when: Any) -> float | None:
    """Epoch seconds for a datetime (naive ones are UTC, as Celery takes them) or a number."""
    if when is None or isinstance(when, (int, float)):
        return when
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    raise TypeError(f"expected a datetime or epoch seconds, got {type(when).__name__}")


def _running_context(name: str) -> JobContext:
    context = current_job.get()
    if context is None:
        raise RuntimeError(f"{name}: this call is only possible inside a running job")
    return context


_TASK_OPTIONS = frozenset(
    {
        "name",
        "bind",
        "max_retries",
        "default_retry_delay",
        "autoretry_for",
        "retry_kwargs",
        "retry_backoff",
        "retry_backoff_max",
        "retry_jitter",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "track_started",
        "acks_late",
        "reject_on_worker_lost",
        "retry_on_worker_lost",
        "typing",
        "serializer",
        "priority",
        "queue",
        "expires",
        "registry",
    }
)
"""The decorator's options. Others (``rate_limit``, ``pydantic``, ``base`` ...) raise TypeError, never dropped."""


@overload
def create_compatible_task(fn: F, /) -> Task: ...


@overload
def create_compatible_task(fn: None = None, /, **options: Any) -> Callable[[F], Task]: ...


def create_compatible_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Task | Callable[..., Task]:
    """Register a ``def`` or ``async def`` as a task, with Celery's options. Usable bare or with arguments.

    Options as Celery's ``@app.task``: ``name``, ``bind``, ``max_retries`` (None: retry for ever),
    ``default_retry_delay``, ``autoretry_for``, ``retry_kwargs``, ``retry_backoff``,
    ``retry_backoff_max``, ``retry_jitter``, ``time_limit``, ``soft_time_limit``, ``ignore_result``,
    ``track_started``, ``acks_late`` (always true here: a job lost with its process runs again),
    ``reject_on_worker_lost`` / ``retry_on_worker_lost``, ``typing`` (False: arguments are not checked
    at submission), ``serializer`` (``"json"`` only), ``priority``, ``queue`` and ``expires`` (defaults
    for each call). Any other option raises TypeError naming it.
    """
    unknown = set(options) - _TASK_OPTIONS
    if unknown:
        raise TypeError(f"unsupported task option(s): {', '.join(sorted(unknown))} (see the README's differences)")
    if options.get("serializer", "json") != "json":
        raise TypeError(f"serializer {options['serializer']!r} is not supported: arguments and results are JSON")
    if options.get("acks_late") is False:
        raise TypeError("acks_late=False is not supported: a job whose process died runs again (acks late)")
    if options.get("max_retries", 0) is not None and not isinstance(options.get("max_retries", 0), int):
        raise TypeError("max_retries must be an integer or None")

    def decorate(func: Callable[..., Any]) -> Task:
        return _register(func, options)

    if fn is not None:
        return decorate(fn)
    return decorate


def _register(func: Callable[..., Any], options: dict[str, Any]) -> Task:
    bind = bool(options.get("bind", False))
    task_name = options.get("name") or f"{func.__module__}.{func.__qualname__}"
    parameters = list(inspect.signature(func).parameters)
    lost = options.get("retry_on_worker_lost", options.get("reject_on_worker_lost", True))
    definition = TaskDefinition(
        name=task_name,
        fn=func,
        max_retries=options.get("max_retries", 3),
        time_limit=options.get("time_limit"),
        soft_time_limit=options.get("soft_time_limit"),
        ignore_result=bool(options.get("ignore_result", False)),
        track_started=bool(options.get("track_started", False)),
        bound=bind,
        retry_on_worker_lost=bool(lost),
        autoretry_for=tuple(options.get("autoretry_for", ())),
        retry_kwargs=dict(options.get("retry_kwargs", {})),
        retry_policy=RetryPolicy(
            default_retry_delay=options.get("default_retry_delay", 180.0),
            retry_backoff=options.get("retry_backoff", False),
            retry_backoff_max=options.get("retry_backoff_max", 600.0),
            retry_jitter=options.get("retry_jitter", True),
        ),
        priority=options.get("priority", 0),
        doc=inspect.getdoc(func),
        parameters=tuple(parameters[1:] if bind else parameters),
        typing=bool(options.get("typing", True)),
    )
    task = Task(func, definition, bind)
    task.defaults = {key: options[key] for key in ("queue", "expires") if options.get(key) is not None}
    if bind:
        definition = _with_fn(definition, functools.partial(func, task))
        task.definition = definition
    (options.get("registry") or default_registry).register(definition)
    return task


def _with_fn(definition: TaskDefinition, fn: Callable[..., Any]) -> TaskDefinition:
    return dataclasses.replace(definition, fn=fn)
