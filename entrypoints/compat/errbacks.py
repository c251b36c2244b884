"""A new-style errback's arguments: Celery calls it with ``(request, exc, traceback)``.

The engine stores those arguments as JSON (the request as a dict, the exception as its error
info); this module turns them back into what a Celery errback expects, a :class:`Context` and the
rebuilt exception, before the errback runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from application.execution import current_job
from domain.job import ErrorInfo
from entrypoints.compat.eager import innermost_frame
from entrypoints.compat.exceptions import exception_from


def takes_several_positionals(call: Callable[..., Any]) -> bool:
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


def errback_arguments(args: tuple[Any, ...]) -> tuple[Any, ...]:
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
