"""The task registry: the only tasks the engine will run are the ones registered here by name."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from application.execution import RETRY_OPTION_NAMES, RetryOptions, RetryRequested
from domain.errors import InvalidArguments, UnknownTask
from domain.queues import check_concurrency, rate_interval
from domain.retry_policy import RetryPolicy


@dataclass(frozen=True, kw_only=True)
class TaskDefinition:
    """A registered task: its function and the options its jobs run with.

    ``fn`` is called with the job's args and kwargs; coroutine functions run on the loop,
    others in the runner's threads. ``autoretry_for`` names exceptions that retry the job.
    """

    name: str
    fn: Callable[..., Any]
    max_retries: int | None = 3
    time_limit: float | None = None
    soft_time_limit: float | None = None
    ignore_result: bool = False
    track_started: bool = False
    bound: bool = False
    retry_on_worker_lost: bool = True
    autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = field(default_factory=dict)
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    priority: int = 0
    doc: str | None = None
    parameters: tuple[str, ...] = ()
    typing: bool = True
    """False (Celery's ``typing=False``): arguments are not checked at submission, only when run."""
    concurrency_key: str | None = None
    concurrency_limit: int | None = None
    """The task's own concurrency key and limit (a call's ``concurrency_key`` replaces both)."""
    rate_limit: str | None = None
    """Celery's ``rate_limit`` (``"10/m"``): how often jobs of this task may start, on every engine together."""

    def __post_init__(self) -> None:
        rate_interval(self.rate_limit)  # a malformed rate limit is refused at registration
        if self.rate_limit is not None:
            object.__setattr__(self, "rate_limit", str(self.rate_limit).strip())
        check_concurrency(self.concurrency_key, self.concurrency_limit)

    @cached_property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def autoretry(self, exc: BaseException) -> RetryRequested:
        """The retry an ``autoretry_for`` exception asks for, with the task's ``retry_kwargs``
        (``countdown``, ``eta``, ``max_retries`` and the options of the next attempt: ``expires`` in
        seconds, ``priority``, ``queue``, ``routing_key``, ``headers``) as Celery applies them."""
        options = dict(self.retry_kwargs)
        next_attempt = RetryOptions(
            **{name: options[name] for name in RETRY_OPTION_NAMES if options.get(name) is not None}
        )
        if "max_retries" in options:
            return RetryRequested(
                exc, options.get("countdown"), options["max_retries"], eta=options.get("eta"), options=next_attempt
            )
        return RetryRequested(exc, options.get("countdown"), eta=options.get("eta"), options=next_attempt)

    @cached_property
    def takes_errback_request(self) -> bool:
        """Whether, as an errback, the task is "new style" and gets ``(request, exc, traceback)``:
        Celery's rule, a plain (not bound) task taking ``*args`` or more than one positional argument."""
        if self.bound:
            return False
        try:
            spec = inspect.getfullargspec(self.fn)
        except TypeError:
            return False
        return spec.varargs is not None or len(spec.args) > 1

    @cached_property
    def signature(self) -> inspect.Signature | None:
        """The function's signature (None for callables that have none to read)."""
        try:
            return inspect.signature(self.fn, eval_str=True)
        except (NameError, SyntaxError):  # annotations that cannot be resolved here: show them as written
            return inspect.signature(self.fn)
        except (TypeError, ValueError):
            return None

    def check_arguments(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` unless the task's function accepts these arguments."""
        signature = self.signature
        if signature is None or not self.typing:
            return
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArguments(f"{self.name}{signature}: {exc}") from None


class TaskRegistry:
    """Task definitions by name. Registering a name twice replaces the earlier definition."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}

    def register(self, definition: TaskDefinition) -> None:
        self._tasks[definition.name] = definition

    def find(self, name: str) -> TaskDefinition | None:
        return self._tasks.get(name)

    def require(self, name: str) -> TaskDefinition:
        definition = self._tasks.get(name)
        if definition is None:
            raise UnknownTask(name)
        return definition

    def __iter__(self) -> Iterator[TaskDefinition]:
        return iter(sorted(self._tasks.values(), key=lambda d: d.name))

    def __contains__(self, name: object) -> bool:
        return name in self._tasks
