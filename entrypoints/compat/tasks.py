"""``@create_compatible_task``: Celery's task decorator, and the task object bound tasks receive as ``self``."""

from __future__ import annotations

import asyncio
import datetime
import functools
import importlib
import inspect
import logging
import socket
import time
import types
import typing
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import msgspec

from application.callbacks import delivery_info
from application.execution import (
    ENGINE_STOPPING,
    RETRY_OPTION_NAMES,
    JobCancelled,
    JobContext,
    Reject,
    ReplaceRequested,
    RetryOptions,
    RetryRequested,
    current_job,
)
from application.registry import TaskDefinition, TaskRegistry
from domain.job import ErrorInfo, Job
from domain.json_values import ensure_json
from domain.retry_policy import RetryPolicy
from entrypoints.compat import binding, signals
from entrypoints.compat.app import App, current_app
from entrypoints.compat.canvas import (
    ImproperlyConfigured,
    Signature,
    chain,
    chunks,
    maybe_signature,
    xmap,
    xstarmap,
)
from entrypoints.compat.canvas import add_to_chord as canvas_add_to_chord
from entrypoints.compat.eager import (
    EagerFrame,
    EagerReplaced,
    EagerResult,
    apply_canvas,
    exhausted,
    exhausted_error,
    innermost_frame,
)
from entrypoints.compat.exceptions import exception_from
from entrypoints.compat.results import AsyncResult

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: Tasks declared with the decorator register here; engines built by the container use it.
default_registry = TaskRegistry()


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


class _Active:
    """The call of a task running in this context: its request, its retry limit, whether eager."""

    __slots__ = ("context", "frame", "max_retries", "request")

    def __init__(
        self, request: Request, max_retries: int | None, frame: EagerFrame | None, context: JobContext | None
    ) -> None:
        self.request = request
        self.max_retries = max_retries
        self.frame = frame
        self.context = context


def _active_call(name: str | None) -> _Active | None:
    """The innermost running call (of the task ``name``, unless None): an eager one or an engine job's."""
    frame = innermost_frame()
    if frame is not None:
        if name is None or frame.request.task == name:
            return _Active(frame.request, frame.max_retries, frame, None)
        return None
    context = current_job.get()
    if context is None or (name is not None and context.job.task != name):
        return None
    return _Active(request_of(context.job), context.job.max_retries, None, context)


def _active_request() -> Request | None:
    active = _active_call(None)
    return None if active is None else active.request


class Task:
    """A registered task, as Celery's ``Task``: call it to run the function here, ``delay`` /
    ``apply_async`` to queue a job, ``apply`` to run it eagerly.

    The decorator makes a subclass of ``base`` (default: this class) per function. A class-based task
    subclasses it with a ``name`` and a ``run`` method, and is registered with
    ``current_app.register_task(MyTask())``. The class attributes are Celery's task options; the
    hooks ``on_success``, ``on_failure``, ``on_retry`` and ``after_return`` are called as Celery's
    worker calls them, in the process that runs the task.
    """

    name: str | None = None
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180.0
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600.0
    retry_jitter: bool = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False
    track_started: bool = False
    acks_late: bool = True
    reject_on_worker_lost: bool | None = None
    retry_on_worker_lost: bool | None = None
    serializer: str = "json"
    priority: int | None = None
    queue: str | None = None
    expires: Any = None
    bind: bool = True
    """Whether ``run`` gets the task as ``self``: always for a class-based task's method."""

    definition: TaskDefinition
    defaults: dict[str, Any]

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Tasks must define the run method.")

    @property
    def app(self) -> App:
        """``current_app`` (``task.app.conf.task_always_eager = True`` as in Celery)."""
        return current_app

    # -- Celery's handlers (override in a base class) -------------------------------------------
    def on_success(self, retval: Any, task_id: str | None, args: Any, kwargs: Any) -> None:
        """Called after the task returned ``retval``."""

    def on_failure(self, exc: BaseException, task_id: str | None, args: Any, kwargs: Any, einfo: Any) -> None:
        """Called after the task failed with ``exc``."""

    def on_retry(self, exc: BaseException | None, task_id: str | None, args: Any, kwargs: Any, einfo: Any) -> None:
        """Called when the task is to be retried."""

    def after_return(self, status: str, retval: Any, task_id: str | None, args: Any, kwargs: Any, einfo: Any) -> None:
        """Called after the task succeeded or failed (not on a retry)."""

    def on_replace(self, sig: Any) -> None:
        """Called by :meth:`replace`: in an eager run the replacement runs here and now; in the engine
        the job waits for it (Celery's ``on_replace``; overriding it must call ``super()``)."""
        canvas = sig.to_canvas()
        active = _active_call(self.name)
        if active is not None and active.frame is not None:
            raise EagerReplaced(canvas, apply_canvas(canvas))
        raise ReplaceRequested(canvas)

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

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Queue a job of this task; awaitable on the loop, blocking from a worker thread. Under
        ``current_app.conf.task_always_eager``, run it here (an :class:`EagerResult`)."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: tuple[Any, ...] | list[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Queue a job, with Celery's options (see the README): ``countdown``, ``eta``, ``expires``,
        ``task_id``, ``priority``, ``queue``, ``headers``, ``link``, ``link_error`` ...; an option this
        engine does not implement raises TypeError. Under ``current_app.conf.task_always_eager`` the
        task runs here instead, as :meth:`apply` (also inside a running task, as in Celery). As
        Celery's, raises ValueError when the task's ``soft_time_limit`` exceeds its ``time_limit``."""
        check_time_limits(self)
        if current_app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        options = {**self.defaults, **options}
        for key in ("link", "link_error"):
            if key in options:
                options[key] = _listed(options[key])
        result: Any = Signature(self.name, args or (), kwargs, options=options).apply_async()
        return result

    def apply(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        link: Any = None,
        link_error: Any = None,
        task_id: str | None = None,
        retries: int | None = None,
        throw: bool | None = None,
        logfile: Any = None,
        loglevel: Any = None,
        headers: dict[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult:
        """Run the task here and now, as Celery's ``apply``: an :class:`EagerResult`.

        ``throw`` (default ``current_app.conf.task_eager_propagates``) raises the task's error at
        once; otherwise ``get()`` raises it. ``retries`` is where ``request.retries`` starts.
        ``countdown`` / ``eta`` are ignored (as Celery's eager runs do); other options as
        ``apply_async``'s.
        """
        for key in ("countdown", "eta"):
            options.pop(key, None)
        call_options: dict[str, Any] = {**options}
        if link is not None:
            call_options["link"] = _listed(link)
        if link_error is not None:
            call_options["link_error"] = _listed(link_error)
        if task_id is not None:
            call_options["task_id"] = task_id
        if headers is not None:
            call_options["headers"] = headers
        spec = Signature(self.name, args or (), kwargs, options=call_options).to_canvas()
        return apply_canvas(spec, throw=throw, retries=retries or 0)

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id)

    # -- inside a running job ------------------------------------------------------------------
    @property
    def request(self) -> Request:
        active = _active_call(self.name)
        if active is None:
            return Request(id=None, task=self.name or "", args=[], kwargs={}, called_directly=True)
        return active.request

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **_: Any
    ) -> Awaitable[None] | None:
        """Report progress (``state`` defaults to PROGRESS); awaitable in async tasks, blocking in sync ones.

        In an async task the update is scheduled at once, so a call that is not awaited still lands.
        Raises inside the task when its job was revoked, which is how a sync task gets cancelled.
        With ``task_id`` naming another job (running, as Celery's backend would store it for any
        id), that job's progress is set instead. In an eager run the update is recorded on the
        :class:`EagerResult` (``updates``) and nothing is stored.
        """
        active = _active_call(self.name)
        if active is not None and active.frame is not None and task_id in (None, active.request.id):
            active.frame.updates.append((state or "PROGRESS", meta))
            return _done_if_on_loop()
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
        if innermost_frame() is not None:
            return False
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
        As Celery's, the other options apply to the next attempt: ``expires`` (seconds from now or a
        datetime), ``priority``, ``queue``, ``routing_key``, ``headers``; any other option raises
        TypeError naming it. In an eager run the task runs again at once (Celery's eager retry).
        """
        if _active_call(self.name) is None:
            _running_context(self.name)
        next_attempt = retry_options(options, "retry()")
        retry_args = None if args is None else list(args)
        retry_kwargs = None if kwargs is None else dict(kwargs)
        when = _epoch(eta)
        if max_retries is None:  # Celery: None means the task's own max_retries
            raise RetryRequested(exc, countdown, eta=when, args=retry_args, kwargs=retry_kwargs, options=next_attempt)
        raise RetryRequested(
            exc, countdown, max_retries, eta=when, args=retry_args, kwargs=retry_kwargs, options=next_attempt
        )

    def add_to_chord(self, sig: Any, lazy: bool = False) -> Any:
        """Add ``sig`` to the chord this running task is a header member of (Celery's ``add_to_chord``):
        the chord's body also waits for it, and gets its result after the others'."""
        return canvas_add_to_chord(sig, lazy)

    def replace(self, sig: Any) -> None:
        """Finish this job with the result of ``sig`` (a signature or a whole canvas) instead
        (eagerly run: the replacement runs here and its result is this task's)."""
        if _active_call(self.name) is None:
            _running_context(self.name)
        sig = maybe_signature(sig)
        if isinstance(sig, chain) and not sig.tasks:
            raise ImproperlyConfigured("Cannot replace with an empty chain")
        self.on_replace(sig)
        raise ReplaceRequested(sig.to_canvas())  # an on_replace that did not call super()


def check_time_limits(task: Task) -> None:
    """Celery's check in ``Task.apply_async``: a task's ``soft_time_limit`` may not exceed its ``time_limit``."""
    soft, hard = task.soft_time_limit, task.time_limit
    if soft and hard and soft > hard:
        raise ValueError("soft_time_limit must be less than or equal to time_limit")


def _listed(value: Any) -> list[Any]:
    """Celery's ``maybe_list``: one signature, or a list or tuple of them."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _done_if_on_loop() -> Awaitable[None] | None:
    """An already finished awaitable on an event loop (an async task may ``await`` it), else None."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    done: asyncio.Future[None] = loop.create_future()
    done.set_result(None)
    return done


def _epoch(when: Any) -> float | None:
    """Epoch seconds for a datetime (naive ones are UTC, as Celery takes them) or a number."""
    if when is None or isinstance(when, (int, float)):
        return when
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    raise TypeError(f"expected a datetime or epoch seconds, got {type(when).__name__}")


def retry_options(options: dict[str, Any], what: str) -> RetryOptions:
    """The options of Celery's ``retry(**options)`` (or ``retry_kwargs``) for the next attempt;
    TypeError naming any this engine does not implement, and for a malformed value."""
    unknown = set(options) - set(RETRY_OPTION_NAMES)
    if unknown:
        raise TypeError(f"{what} does not support the option(s): {', '.join(sorted(unknown))}")
    given = {name: value for name, value in options.items() if value is not None}
    expires = given.get("expires")
    if isinstance(expires, datetime.datetime):  # Celery: seconds from now, or a datetime
        given["expires"] = _epoch(expires) - time.time()  # type: ignore[operator]
    elif expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
        raise TypeError(f"{what}: expires must be seconds or a datetime, got {type(expires).__name__}")
    headers = given.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise TypeError(f"{what}: headers must be a dict")
    try:
        return msgspec.convert(given, RetryOptions, strict=False)
    except msgspec.ValidationError as exc:
        raise TypeError(f"{what}: {exc}") from None


def _running_context(name: str | None) -> JobContext:
    context = current_job.get()
    if context is None:
        raise RuntimeError(f"{name}: this call is only possible inside a running job")
    return context


# -- signals and handlers around each call -------------------------------------------------------

_HANDLERS = ("on_success", "on_failure", "on_retry", "after_return")


def _has_handlers(task: Task) -> bool:
    return any(getattr(type(task), hook) is not getattr(Task, hook) for hook in _HANDLERS)


def _instrumented(task: Task, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` (what the engine runs) wrapped so that Celery's task signals and the task's handlers
    run around it, in the task's own thread (or on its loop, for an async task). Costs one check
    when nothing listens."""
    handlers = _has_handlers(task)
    errback_capable = not task.bind and _takes_several_positionals(call)

    if inspect.iscoroutinefunction(call):

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            if errback_capable:
                args = _errback_arguments(args)
            if not handlers and not signals.any_task_receivers():
                return _stored_form(await call(*args, **kwargs))
            active = _active_call(task.name)
            if active is None:
                return _stored_form(await call(*args, **kwargs))
            _received(active)
            _prerun(task, active, args, kwargs)
            try:
                value = await call(*args, **kwargs)
            except asyncio.CancelledError:
                if active.context is not None and not active.context.cancelled:  # a time limit
                    signals.interrupted.add(active.request.id or "")
                raise
            except JobCancelled:
                raise
            except BaseException as exc:
                _raised(task, active, args, kwargs, exc)
                raise
            _returned(task, active, args, kwargs, value)
            return _stored_form(value)

        wrapped: Callable[..., Any] = run_async
    else:

        def run(*args: Any, **kwargs: Any) -> Any:
            if errback_capable:
                args = _errback_arguments(args)
            if not handlers and not signals.any_task_receivers():
                return _stored_form(call(*args, **kwargs))
            active = _active_call(task.name)
            if active is None:
                return _stored_form(call(*args, **kwargs))
            _received(active)
            _prerun(task, active, args, kwargs)
            try:
                value = call(*args, **kwargs)
            except JobCancelled:  # revoked or timed out from outside: the engine's events tell
                raise
            except BaseException as exc:
                _raised(task, active, args, kwargs, exc)
                raise
            _returned(task, active, args, kwargs, value)
            return _stored_form(value)

        wrapped = run
    functools.update_wrapper(wrapped, call)
    wrapped.__signature__ = _signature_of(call)  # type: ignore[attr-defined]
    return wrapped


def _stored_form(value: Any) -> Any:
    """What a task's return value is stored as: a result handle becomes Celery's ``as_tuple()`` form."""
    return value.as_tuple() if isinstance(value, AsyncResult) else value


def _takes_several_positionals(call: Callable[..., Any]) -> bool:
    """Celery's rule for a "new style" errback (see ``TaskDefinition.takes_errback_request``)."""
    try:
        spec = inspect.getfullargspec(call)
    except TypeError:
        return False
    return spec.varargs is not None or len(spec.args) > 1


class Context(dict[str, Any]):
    """The failed task's request a new-style errback gets, as Celery's ``Context``: ``request.id``
    (and ``request["id"]``), ``task``, ``args``, ``kwargs``, ``retries``, ``root_id``, ``parent_id``,
    ``group``, ``delivery_info`` ...; a field the request does not have reads as None."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)


def _errback_arguments(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """A new-style errback's arguments as Celery passes them: the engine stores ``(request, exc,
    traceback)`` as JSON; the task gets the request as a :class:`Context` and the exception rebuilt."""
    context = current_job.get()
    if context is None or context.job.options.errback_of is None or innermost_frame() is not None:
        return args
    if len(args) < 3 or not isinstance(args[0], dict) or not isinstance(args[1], dict):
        return args
    error = args[1]
    try:
        exc: Any = exception_from(
            ErrorInfo(
                type=str(error.get("type") or "Exception"),
                message=str(error.get("message") or ""),
                traceback=args[2] if isinstance(args[2], str) else None,
                module=error.get("module"),
                args=error.get("args"),
            )
        )
    except Exception:
        exc = error
    return (Context(args[0]), exc, *args[2:])


def _signature_of(call: Callable[..., Any]) -> inspect.Signature:
    try:
        return inspect.signature(call, eval_str=True)
    except (NameError, SyntaxError, TypeError):
        return inspect.signature(call)


def _received(active: _Active) -> None:
    """Celery's ``task_received`` for an engine job about to run: sent as the worker's consumer sends
    it, outside the job (what a receiver submits is not the job's child)."""
    if active.frame is not None or not signals.task_received.receivers:
        return
    token = current_job.set(None)
    try:
        signals.task_received.send(sender=None, request=active.request)
    finally:
        current_job.reset(token)


def _prerun(task: Task, active: _Active, args: Any, kwargs: Any) -> None:
    signals.task_prerun.send(sender=task, task_id=active.request.id, task=task, args=args, kwargs=kwargs)


def _postrun(task: Task, active: _Active, args: Any, kwargs: Any, retval: Any, state: str) -> None:
    signals.task_postrun.send(
        sender=task, task_id=active.request.id, task=task, args=args, kwargs=kwargs, retval=retval, state=state
    )


def _handler(task: Task, hook: str, *args: Any) -> None:
    try:
        getattr(task, hook)(*args)
    except Exception:
        log.exception("%s.%s raised", task.name, hook)


def _returned(task: Task, active: _Active, args: Any, kwargs: Any, value: Any) -> None:
    if active.frame is None:
        try:
            ensure_json(value, f"result of {task.name}")
        except Exception as exc:  # the engine fails the job with this very error
            _raised(task, active, args, kwargs, exc)
            raise
    _succeeded(task, active, args, kwargs, value)


def _succeeded(task: Task, active: _Active, args: Any, kwargs: Any, value: Any) -> None:
    task_id = active.request.id
    _handler(task, "on_success", value, task_id, args, kwargs)
    signals.task_success.send(sender=task, result=value)
    _handler(task, "after_return", "SUCCESS", value, task_id, args, kwargs, None)
    _postrun(task, active, args, kwargs, value, "SUCCESS")


def _raised(task: Task, active: _Active, args: Any, kwargs: Any, exc: BaseException) -> None:
    """What the task's exception means, as the engine (or the eager run) will take it: a retry, a
    failure (a retry past the limit included), or a replacement."""
    if isinstance(exc, EagerReplaced):
        outcome = exc.result
        if outcome.failed():
            _failed(task, active, args, kwargs, outcome.result)
        else:
            _succeeded(task, active, args, kwargs, outcome.result)
        return
    if isinstance(exc, ReplaceRequested):
        _postrun(task, active, args, kwargs, exc, "IGNORED")  # Celery: replaced is Ignore
        return
    retry: RetryRequested | None = exc if isinstance(exc, RetryRequested) else None
    definition = task.definition
    if retry is None and definition.autoretry_for and isinstance(exc, definition.autoretry_for):
        retry = definition.autoretry(exc)
    if retry is None and isinstance(exc, Reject):
        _rejected(task, active, args, kwargs, exc)
        return
    if retry is None:
        _failed(task, active, args, kwargs, exc)
        return
    limit = exhausted(retry, active.request.retries, active.max_retries)
    if limit is not False:
        _failed(task, active, args, kwargs, exhausted_error(retry, task.name or "", active.request.id, limit))
        return
    einfo = signals.exception_info(retry.exc if retry.exc is not None else retry)
    _handler(task, "on_retry", retry.exc, active.request.id, args, kwargs, einfo)
    signals.task_retry.send(sender=task, request=active.request, reason=retry, einfo=einfo)
    _postrun(task, active, args, kwargs, retry, "RETRY")


def _rejected(task: Task, active: _Active, args: Any, kwargs: Any, exc: Reject) -> None:
    """Celery's ``Reject``: no handler runs; ``task_postrun`` says REJECTED, and a rejection without
    requeue (which fails the job) sends ``task_failure``, as Celery's worker does (not in an eager run)."""
    _postrun(task, active, args, kwargs, exc, "REJECTED")
    if not exc.requeue and active.frame is None:
        einfo = signals.exception_info(exc)
        signals.task_failure.send(
            sender=task,
            task_id=active.request.id,
            exception=exc,
            args=args,
            kwargs=kwargs,
            traceback=einfo.tb,
            einfo=einfo,
        )


def _failed(task: Task, active: _Active, args: Any, kwargs: Any, exc: BaseException) -> None:
    einfo = signals.exception_info(exc)
    task_id = active.request.id
    _handler(task, "on_failure", exc, task_id, args, kwargs, einfo)
    signals.task_failure.send(
        sender=task, task_id=task_id, exception=exc, args=args, kwargs=kwargs, traceback=einfo.tb, einfo=einfo
    )
    _handler(task, "after_return", "FAILURE", exc, task_id, args, kwargs, einfo)
    _postrun(task, active, args, kwargs, exc, "FAILURE")


# -- registration --------------------------------------------------------------------------------

_tasks: dict[str, Task] = {}


def registered_tasks() -> dict[str, Task]:
    """Every task object registered here, by name (a copy)."""
    return dict(_tasks)


def task_named(name: str | None) -> Task | None:
    """The task object registered under ``name`` (None for a task this module did not register)."""
    return None if name is None else _tasks.get(name)


_TASK_OPTIONS = frozenset(
    {
        "name",
        "bind",
        "base",
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
        "pydantic",
        "pydantic_strict",
        "pydantic_context",
        "pydantic_dump_kwargs",
    }
)
"""The decorator's options. Others (``rate_limit`` ...) raise TypeError, never dropped."""

_PYDANTIC_OPTIONS = ("pydantic", "pydantic_strict", "pydantic_context", "pydantic_dump_kwargs")


@overload
def create_compatible_task(fn: F, /) -> Task: ...


@overload
def create_compatible_task(fn: None = None, /, **options: Any) -> Callable[[F], Task]: ...


def create_compatible_task(fn: Callable[..., Any] | None = None, /, **options: Any) -> Task | Callable[..., Task]:
    """Register a ``def`` or ``async def`` as a task, with Celery's options. Usable bare or with arguments.

    Options as Celery's ``@app.task``: ``name``, ``bind``, ``base`` (a :class:`Task` subclass: its
    class attributes are the defaults and its handlers are called), ``max_retries`` (None: retry for
    ever), ``default_retry_delay``, ``autoretry_for``, ``retry_kwargs``, ``retry_backoff``,
    ``retry_backoff_max``, ``retry_jitter``, ``time_limit``, ``soft_time_limit``, ``ignore_result``,
    ``track_started``, ``acks_late`` (always true here: a job lost with its process runs again),
    ``reject_on_worker_lost`` / ``retry_on_worker_lost``, ``typing`` (False: arguments are not checked
    at submission), ``serializer`` (``"json"`` only), ``priority``, ``queue`` and ``expires`` (defaults
    for each call). Any other option raises TypeError naming it.
    """
    unknown = set(options) - _TASK_OPTIONS
    if unknown:
        raise TypeError(f"unsupported task option(s): {', '.join(sorted(unknown))} (see the README's differences)")
    base = options.get("base") or Task
    if not (isinstance(base, type) and issubclass(base, Task)):
        raise TypeError(f"base must be a Task subclass, got {base!r}")
    _check_options(options)

    def decorate(func: Callable[..., Any]) -> Task:
        return _register(func, options, base)

    if fn is not None:
        return decorate(fn)
    return decorate


def _check_options(options: dict[str, Any]) -> None:
    if options.get("serializer", "json") != "json":
        raise TypeError(f"serializer {options['serializer']!r} is not supported: arguments and results are JSON")
    if options.get("acks_late") is False:
        raise TypeError("acks_late=False is not supported: a job whose process died runs again (acks late)")
    if options.get("max_retries", 0) is not None and not isinstance(options.get("max_retries", 0), int):
        raise TypeError("max_retries must be an integer or None")


def _register(func: Callable[..., Any], options: dict[str, Any], base: type[Task]) -> Task:
    bind = bool(options.get("bind", False))
    name = options.get("name") or f"{func.__module__}.{func.__qualname__}"
    if options.get("pydantic") is True:
        func = pydantic_wrapper(
            func,
            name,
            strict=bool(options.get("pydantic_strict", False)),
            context=options.get("pydantic_context"),
            dump_kwargs=options.get("pydantic_dump_kwargs"),
        )
    attributes: dict[str, Any] = {
        key: value
        for key, value in options.items()
        if key not in ("bind", "base", "registry", "name", *_PYDANTIC_OPTIONS)
    }
    attributes.update(
        name=name,
        run=func if bind else staticmethod(func),
        bind=bind,
        __doc__=func.__doc__,
        __module__=func.__module__,
        __wrapped__=func,
    )
    cls = type(func.__name__, (base,), attributes)
    task: Task = cls()
    task.__name__ = getattr(func, "__name__", task.name)  # type: ignore[attr-defined]
    return register_task(task, registry=options.get("registry"))


def pydantic_wrapper(
    func: Callable[..., Any],
    task_name: str,
    *,
    strict: bool = False,
    context: dict[str, Any] | None = None,
    dump_kwargs: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """Celery's ``pydantic=True``: ``func`` wrapped so that each argument annotated with a pydantic
    ``BaseModel`` (or ``Optional`` of one) is validated into that model (``model_validate``, with
    ``strict`` and ``context``) before the call, and a returned model instance of the annotated return
    class is dumped to JSON data (``model_dump(mode="json", **dump_kwargs)``). String annotations
    (``from __future__ import annotations``) are resolved, at decoration or else at the first call.

    pydantic is imported here, when a task asks for it: ImproperlyConfigured if it is not installed.
    """
    try:
        pydantic = importlib.import_module("pydantic")
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured("You need to install pydantic to use pydantic model serialization.") from exc
    base_model: type = pydantic.BaseModel
    validate_context = {**(context or {}), "celery_app": current_app, "celery_task_name": task_name}
    dump = {"mode": "json", **(dump_kwargs or {})}
    signature = inspect.signature(func)
    resolved: list[dict[str, Any] | None] = [_type_hints(func)]

    def annotation(name: str) -> Any:
        hints = resolved[0]
        if hints is None:
            hints = resolved[0] = _type_hints(func)
        if hints is not None and name in hints:
            found = hints[name]
        elif name == "return":
            found = signature.return_annotation
        else:
            found = signature.parameters[name].annotation
        return found

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            model = annotation(name)
            optional = _optional_of(model)
            if optional is not None and value is not None:  # Optional[Model]: None stays None
                model = optional
            if isinstance(model, type) and issubclass(model, base_model):
                bound.arguments[name] = model.model_validate(value, strict=strict, context=validate_context)
        return bound

    def result(value: Any) -> Any:
        model = annotation("return")
        model = _optional_of(model) or model
        if isinstance(model, type) and isinstance(value, base_model) and isinstance(value, model):
            return value.model_dump(**dump)
        return value

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            bound = arguments(args, kwargs)
            return result(await func(*bound.args, **bound.kwargs))

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound = arguments(args, kwargs)
        return result(func(*bound.args, **bound.kwargs))

    return run


def _type_hints(func: Callable[..., Any]) -> dict[str, Any] | None:
    """The function's resolved annotations; None while a string annotation names what does not exist yet."""
    try:
        return typing.get_type_hints(func)
    except (NameError, AttributeError, TypeError):
        return None


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None`` (Celery's ``get_optional_arg``), else None."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    members = typing.get_args(annotation)
    if len(members) != 2 or type(None) not in members:
        return None
    return next(member for member in members if member is not type(None))


def _checked_retry_kwargs(task: Task) -> dict[str, Any]:
    """The task's ``retry_kwargs`` (what its ``autoretry_for`` passes to ``retry()``); TypeError for an
    option ``retry()`` does not take here. ``expires`` must be seconds: a datetime fixed at decoration
    would be the same instant for every retry."""
    retry_kwargs = dict(task.retry_kwargs or {})
    timing = {key: retry_kwargs[key] for key in ("countdown", "eta", "max_retries") if key in retry_kwargs}
    options = {key: value for key, value in retry_kwargs.items() if key not in timing}
    if isinstance(options.get("expires"), datetime.datetime):
        raise TypeError(f"{task.name}: retry_kwargs expires must be a number of seconds")
    retry_options(options, f"{task.name}: retry_kwargs")
    if retry_kwargs.get("eta") is not None:
        retry_kwargs["eta"] = _epoch(retry_kwargs["eta"])
    return retry_kwargs


def register_task(task: Task, registry: TaskRegistry | None = None) -> Task:
    """Register a task object (a class-based task: ``register_task(MyTask())``, as Celery's
    ``app.register_task``): its class attributes are its options, its ``run`` what it runs."""
    if isinstance(task, type):
        raise TypeError("register_task() takes a task object: register_task(MyTask())")
    cls = type(task)
    if not task.name:
        task.name = f"{cls.__module__}.{cls.__name__}"
    _check_options({key: getattr(task, key) for key in ("serializer", "acks_late", "max_retries")})
    run = task.run
    parameters = list(inspect.signature(run).parameters)
    lost = task.retry_on_worker_lost
    if lost is None:
        lost = task.reject_on_worker_lost if task.reject_on_worker_lost is not None else True
    definition = TaskDefinition(
        name=task.name,
        fn=_instrumented(task, run),
        max_retries=task.max_retries,
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
        ignore_result=bool(task.ignore_result),
        track_started=bool(task.track_started),
        bound=bool(task.bind),
        retry_on_worker_lost=bool(lost),
        autoretry_for=tuple(task.autoretry_for or ()),
        retry_kwargs=_checked_retry_kwargs(task),
        retry_policy=RetryPolicy(
            default_retry_delay=task.default_retry_delay,
            retry_backoff=task.retry_backoff,
            retry_backoff_max=task.retry_backoff_max,
            retry_jitter=task.retry_jitter,
        ),
        priority=task.priority or 0,
        doc=inspect.getdoc(getattr(task, "__wrapped__", run)) if task.bind else inspect.getdoc(run),
        parameters=tuple(parameters),
        typing=bool(task.typing),
    )
    task.definition = definition
    task.defaults = {key: getattr(task, key) for key in ("queue", "expires") if getattr(task, key) is not None}
    (registry or default_registry).register(definition)
    _tasks[definition.name] = task
    return task
