"""How an exception raised by a task becomes the job's next state: retry, failure, revocation."""

from __future__ import annotations

import math
import os
import traceback
from typing import Any

from domain.job import ErrorInfo, Job


class TimeLimitExceeded(Exception):
    """The job ran past its hard time limit and was stopped."""


class WorkerLostError(Exception):
    """The process running the job died, and the job may not run again."""


def error_info(exc: BaseException) -> ErrorInfo:
    """The stored form of an exception: its type name, message and traceback, its class's module and its args.

    The args are what the caller needs to rebuild an equal exception (``entrypoints.compat.exceptions``):
    JSON as they are, an argument that is not JSON as its ``repr()`` (Celery's ``ensure_serializable``).
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    cls = type(exc)
    return ErrorInfo(
        type=cls.__name__,
        message=str(exc),
        traceback=text,
        module=cls.__module__,
        args=[_json_or_repr(arg) for arg in _arguments(exc)],
    )


def _arguments(exc: BaseException) -> tuple[Any, ...]:
    """``exc.args``, except that an ``OSError`` with a file name gives what rebuilds it: its ``args`` hold only
    ``(errno, strerror)``, the file names are passed as the constructor's 3rd and 5th arguments."""
    if not isinstance(exc, OSError) or (exc.filename is None and exc.filename2 is None):
        return exc.args
    if exc.errno is None or exc.args != (exc.errno, exc.strerror):
        return exc.args
    names = [_path(exc.filename)]
    if exc.filename2 is not None:
        names += [getattr(exc, "winerror", None), _path(exc.filename2)]
    return (exc.errno, exc.strerror, *names)


def _path(name: Any) -> Any:
    return os.fspath(name) if isinstance(name, os.PathLike) else name


def _json_or_repr(value: Any) -> Any:
    """``value`` as plain JSON (tuples become lists), or its ``repr()`` when it is not JSON data."""
    try:
        return _plain(value)
    except (TypeError, ValueError, RecursionError):
        try:
            return repr(value)
        except Exception:
            return f"<unrepresentable {type(value).__name__}>"


_INT_RANGE = range(-(2**63), 2**64)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        if value not in _INT_RANGE:
            raise ValueError("integer out of the JSON store's range")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not a finite number")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError("JSON object keys are strings")
        return {str(key): _plain(item) for key, item in value.items()}
    raise TypeError(f"{type(value).__name__} is not JSON data")


def revoked_error(job: Job) -> ErrorInfo:
    """What a revoked job reports as its error (Celery's ``TaskRevokedError``)."""
    return ErrorInfo(type="TaskRevokedError", message=f"job {job.id} ({job.task}) was revoked")
