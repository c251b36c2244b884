"""``@create_compatible_task``: Celery's task decorator, and the task object bound tasks receive as ``self``."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import msgspec

from application.execution import (
    ENGINE_STOPPING,
    JobCancelled,
    JobContext,
    ReplaceRequested,
    RetryRequested,
    current_job,
)
from application.registry import TaskDefinition, TaskRegistry
from domain.retry_policy import RetryPolicy
from entrypoints.compat.canvas import CanvasBase, Signature
from entrypoints.compat.results import AsyncResult

F = TypeVar("F", bound=Callable[..., Any])

#: Tasks declared with the decorator register here; engines built by the container use it.
default_registry = TaskRegistry()


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """What ``self.request`` tells a running task about its job, as Celery's request does."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    retries: int
    eta: float | None
    workflow_id: str | None
    called_directly: bool = False


class Task:
    """A registered task. Call it to run the function here; ``delay``/``apply_async`` to queue a job."""

    def __init__(self, fn: Callable[..., Any], definition: TaskDefinition, bind: bool) -> None:
        self.run = fn
        self.name = definition.name
        self.definition = definition
        self.bind = bind
        self.max_retries = definition.max_retries
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
        self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None, immutable: bool = False, **options: Any
    ) -> Signature:
        return Signature(self.name, args, kwargs, immutable, **options)

    def delay(self, *args: Any, **kwargs: Any) -> Awaitable[AsyncResult] | AsyncResult:
        """Queue a job of this task; awaitable on the loop, blocking from a worker thread."""
        return Signature(self.name, args, kwargs).apply_async()

    def apply_async(
        self, args: tuple[Any, ...] | list[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Awaitable[AsyncResult] | AsyncResult:
        """Queue a job. Options: ``countdown``, ``eta`` (datetime or epoch seconds), ``priority``,
        ``max_retries``, ``time_limit``."""
        return Signature(self.name, args or (), kwargs, **options).apply_async()

    def AsyncResult(self, task_id: str) -> AsyncResult:
        return AsyncResult(task_id)

    # -- inside a running job ------------------------------------------------------------------
    @property
    def request(self) -> Request:
        context = current_job.get()
        if context is None or context.job.task != self.name:
            return Request(
                id="", task=self.name, args=[], kwargs={}, retries=0, eta=None, workflow_id=None, called_directly=True
            )
        job = context.job
        return Request(
            id=job.id,
            task=job.task,
            args=job.args,
            kwargs=job.kwargs,
            retries=job.retries,
            eta=job.due_at,
            workflow_id=job.workflow_id,
        )

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **_: Any
    ) -> Awaitable[None] | None:
        """Report progress (``state`` defaults to PROGRESS); awaitable in async tasks, blocking in sync ones.

        In an async task the update is scheduled at once, so a call that is not awaited still lands.
        Raises inside the task when its job was revoked, which is how a sync task gets cancelled.
        """
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
        countdown: float | None = None,
        max_retries: int | None = None,
        **_: Any,
    ) -> RetryRequested:
        """Ask to run this job again later (``raise self.retry(exc=e, countdown=5)`` as in Celery)."""
        _running_context(self.name)
        if max_retries is None:  # Celery: None means the task's own max_retries
            raise RetryRequested(exc=exc, countdown=countdown)
        raise RetryRequested(exc=exc, countdown=countdown, max_retries=max_retries)

    def replace(self, sig: CanvasBase) -> None:
        """Finish this job with the result of ``sig`` (a signature or a whole canvas) instead."""
        _running_context(self.name)
        raise ReplaceRequested(sig.to_canvas())


def _running_context(name: str) -> JobContext:
    context = current_job.get()
    if context is None:
        raise RuntimeError(f"{name}: this call is only possible inside a running job")
    return context


@overload
def create_compatible_task(fn: F, /) -> Task: ...


@overload
def create_compatible_task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    bind: bool = False,
    max_retries: int = 3,
    default_retry_delay: float = 180.0,
    autoretry_for: tuple[type[BaseException], ...] = (),
    retry_backoff: bool | float = False,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    time_limit: float | None = None,
    retry_on_worker_lost: bool = True,
    priority: int = 0,
    registry: TaskRegistry | None = None,
) -> Callable[[F], Task]: ...


def create_compatible_task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    bind: bool = False,
    max_retries: int = 3,
    default_retry_delay: float = 180.0,
    autoretry_for: tuple[type[BaseException], ...] = (),
    retry_backoff: bool | float = False,
    retry_backoff_max: float = 600.0,
    retry_jitter: bool = True,
    time_limit: float | None = None,
    retry_on_worker_lost: bool = True,
    priority: int = 0,
    registry: TaskRegistry | None = None,
) -> Task | Callable[[Callable[..., Any]], Task]:
    """Register a ``def`` or ``async def`` as a task, with Celery's options. Usable bare or with arguments."""

    def decorate(func: Callable[..., Any]) -> Task:
        task_name = name or f"{func.__module__}.{func.__qualname__}"
        parameters = list(inspect.signature(func).parameters)
        definition = TaskDefinition(
            name=task_name,
            fn=func,
            max_retries=max_retries,
            time_limit=time_limit,
            retry_on_worker_lost=retry_on_worker_lost,
            autoretry_for=tuple(autoretry_for),
            retry_policy=RetryPolicy(
                default_retry_delay=default_retry_delay,
                retry_backoff=retry_backoff,
                retry_backoff_max=retry_backoff_max,
                retry_jitter=retry_jitter,
            ),
            priority=priority,
            doc=inspect.getdoc(func),
            parameters=tuple(parameters[1:] if bind else parameters),
        )
        task = Task(func, definition, bind)
        if bind:
            definition = _with_fn(definition, functools.partial(func, task))
            task.definition = definition
        (registry or default_registry).register(definition)
        return task

    if fn is not None:
        return decorate(fn)
    return decorate


def _with_fn(definition: TaskDefinition, fn: Callable[..., Any]) -> TaskDefinition:
    return dataclasses.replace(definition, fn=fn)
