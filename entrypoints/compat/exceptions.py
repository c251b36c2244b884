"""A task's stored error turned back into an exception, as Celery's JSON result backend rebuilds it.

The stored form (``ErrorInfo``, written by ``application.outcomes.error_info``) names the exception's class
(``module``, ``type``) and holds its ``args`` as JSON. The class is found without running anything the store
says: a builtin, an engine exception, or a class of a module this process has *already* imported; otherwise a
subclass of ``TaskError`` of the same name and module stands in for it. Nothing is imported, evaluated or
unpickled. The rebuilt exception carries the task's traceback as a note.
"""

from __future__ import annotations

import builtins
import sys
from typing import Any

from application.dispatcher import MaxRetriesExceededError
from application.outcomes import TimeLimitExceeded, WorkerLostError
from domain.errors import InvalidCanvas, NotJsonValue, UnknownTask
from domain.job import ErrorInfo


class TaskError(Exception):
    """Base of the classes that stand in for a stored error's class when this process does not have it."""


class UnknownResultError(LookupError):
    """No job or workflow has this id (Celery would report PENDING; this engine knows better)."""


class ChordError(TaskError):
    """A chord's header member failed, so its body was never called (as Celery's ``ChordError``)."""


class TaskRevokedError(TaskError):
    """The job or workflow was revoked before it finished."""


_ENGINE_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls
    for cls in (
        ChordError,
        TaskRevokedError,
        NotJsonValue,
        UnknownTask,
        InvalidCanvas,
        TimeLimitExceeded,
        WorkerLostError,
        MaxRetriesExceededError,
    )
}
"""The engine's own errors, by name: the engine stores some of them with no module."""

_synthesized: dict[tuple[str, str], type[TaskError]] = {}


def exception_from(error: ErrorInfo) -> BaseException:
    """The stored error as an exception: the same class built from the same args when this process has it.

    Errors stored without ``args`` (before they were kept) are built from their message, as they were then.
    A class whose constructor refuses its own args (it requires more than it passes on to ``Exception``)
    gives, as Celery does, an exception naming the class and the args: here a ``TaskError`` subclass of
    the class's name.
    """
    cls = _class_of(error)
    args: tuple[Any, ...] = (error.message,) if error.args is None else tuple(error.args)
    try:
        exc: BaseException = cls(*args)
    except Exception:
        module = error.module or __name__
        shown = ", ".join(repr(arg) for arg in args)
        exc = _stand_in(module, error.type)(f"{module}.{error.type}({shown})")
    exc.__notes__ = [f"remote traceback:\n{error.traceback}"] if error.traceback else []
    return exc


def _class_of(error: ErrorInfo) -> type[BaseException]:
    """The class to rebuild ``error`` with; only an ``Exception`` subclass, so that a task's ``SystemExit``,
    ``KeyboardInterrupt`` or ``CancelledError`` re-raised by ``get()`` cannot stop or cancel the caller."""
    name, module = error.type, error.module
    if module is None:
        engine_error = _ENGINE_ERRORS.get(name)
        if engine_error is not None:
            return engine_error
    if module is None or module == "builtins":
        found: object = getattr(builtins, name, None)
    else:
        found = _already_imported(module, name)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return _stand_in(module or __name__, name)


def _already_imported(module: str, name: str) -> object:
    """``module.name`` if ``module`` is already imported; read from its namespace, so that no module
    ``__getattr__`` hook (a lazy import) runs."""
    loaded = sys.modules.get(module)
    if loaded is None:
        return None
    try:
        return vars(loaded).get(name)
    except TypeError:
        return None


def _stand_in(module: str, name: str) -> type[TaskError]:
    """A ``TaskError`` subclass named ``name`` in ``module``, made once per (module, name)."""
    key = (module, name)
    cls = _synthesized.get(key)
    if cls is None:
        cls = _synthesized.setdefault(key, type(name, (TaskError,), {"__module__": module}))
    return cls
