"""``Task``: the base class of every task object, as Celery's ``Task``.

The decorator makes a subclass of it per function and a class-based task subclasses it directly.
Its methods are the task's whole surface: calling it, queueing it (``delay``, ``apply_async``,
signatures), running it eagerly (``apply``), and what a running task calls on ``self``
(``request``, ``update_state``, ``retry``, ``replace`` ...). Registering a task is
:mod:`entrypoints.compat.registration`'s; what runs around each call is
:mod:`entrypoints.compat.instrumentation`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from application.execution import (
    ENGINE_STOPPING,
    JobCancelled,
    ReplaceRequested,
    RetryRequested,
    current_job,
)
from application.registry import TaskDefinition
from entrypoints.compat import binding
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
    EagerReplaced,
    EagerResult,
    apply_canvas,
    innermost_frame,
)
from entrypoints.compat.request import Request, active_call, running_context
from entrypoints.compat.results import AsyncResult
from entrypoints.compat.retry import epoch_seconds, retry_options


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
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    rate_limit: str | int | float | None = None
    """Celery's ``rate_limit`` (``"10/m"``): its jobs start at most at that rate, on every engine together."""
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
        active = active_call(self.name)
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
        active = active_call(self.name)
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
        active = active_call(self.name)
        if active is not None and active.frame is not None and task_id in (None, active.request.id):
            active.frame.updates.append((state or "PROGRESS", meta))
            return _done_if_on_loop()
        context = current_job.get()
        if task_id is not None and (context is None or task_id != context.job.id):
            target = task_id

            async def update_other(engine: Any) -> None:
                await engine.jobs.report_progress(target, state or "PROGRESS", meta)

            return binding.call(update_other)
        context = running_context(self.name)
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
        if active_call(self.name) is None:
            running_context(self.name)
        next_attempt = retry_options(options, "retry()")
        retry_args = None if args is None else list(args)
        retry_kwargs = None if kwargs is None else dict(kwargs)
        when = epoch_seconds(eta)
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
        if active_call(self.name) is None:
            running_context(self.name)
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
