"""``@create_compatible_task`` and ``register_task``: how a task becomes known to the engine.

Registering checks the task's options (refusing any this engine does not implement), builds the
:class:`~application.registry.TaskDefinition` the engine runs from the task's class attributes,
and keeps the task object by name, which is how signatures, signals and eager runs find it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from application.registry import TaskDefinition, TaskRegistry
from domain.queues import check_concurrency, rate_interval
from domain.retry_policy import RetryPolicy
from entrypoints.compat.base_task import Task
from entrypoints.compat.instrumentation import instrumented
from entrypoints.compat.pydantic_support import pydantic_wrapper
from entrypoints.compat.retry import checked_retry_kwargs

F = TypeVar("F", bound=Callable[..., Any])

#: Tasks declared with the decorator register here; engines built by the container use it.
default_registry = TaskRegistry()

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
        "concurrency_key",
        "concurrency_limit",
        "rate_limit",
        "registry",
        "pydantic",
        "pydantic_strict",
        "pydantic_context",
        "pydantic_dump_kwargs",
    }
)
"""The decorator's options. Others raise TypeError, never dropped."""

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


def register_task(task: Task, registry: TaskRegistry | None = None) -> Task:
    """Register a task object (a class-based task: ``register_task(MyTask())``, as Celery's
    ``app.register_task``): its class attributes are its options, its ``run`` what it runs."""
    if isinstance(task, type):
        raise TypeError("register_task() takes a task object: register_task(MyTask())")
    cls = type(task)
    if not task.name:
        task.name = f"{cls.__module__}.{cls.__name__}"
    _check_options({key: getattr(task, key) for key in ("serializer", "acks_late", "max_retries")})
    check_concurrency(task.concurrency_key, task.concurrency_limit)
    rate_interval(task.rate_limit)
    run = task.run
    parameters = list(inspect.signature(run).parameters)
    lost = task.retry_on_worker_lost
    if lost is None:
        lost = task.reject_on_worker_lost if task.reject_on_worker_lost is not None else True
    definition = TaskDefinition(
        name=task.name,
        fn=instrumented(task, run),
        max_retries=task.max_retries,
        time_limit=task.time_limit,
        soft_time_limit=task.soft_time_limit,
        ignore_result=bool(task.ignore_result),
        track_started=bool(task.track_started),
        bound=bool(task.bind),
        retry_on_worker_lost=bool(lost),
        autoretry_for=tuple(task.autoretry_for or ()),
        retry_kwargs=checked_retry_kwargs(task),
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
        concurrency_key=task.concurrency_key,
        concurrency_limit=task.concurrency_limit,
        rate_limit=None if task.rate_limit is None else str(task.rate_limit),
    )
    task.definition = definition
    task.defaults = {key: getattr(task, key) for key in ("queue", "expires") if getattr(task, key) is not None}
    (registry or default_registry).register(definition)
    _tasks[definition.name] = task
    return task
