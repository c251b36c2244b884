"""What Celery's ``retry()`` options mean here, shared by ``self.retry()`` and ``retry_kwargs``.

A task's ``retry_kwargs`` are checked once, when it is registered, with the same rules as a
``self.retry(**options)`` call is checked when it is made; both live here so that the two cannot
drift apart.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any

import msgspec

from application.execution import RETRY_OPTION_NAMES, RetryOptions

if TYPE_CHECKING:
    from entrypoints.compat.base_task import Task


def epoch_seconds(when: object) -> float | None:
    """Epoch seconds for a datetime (naive ones are UTC, as Celery takes them) or a number."""
    if when is None or isinstance(when, (int, float)):
        return when
    if isinstance(when, datetime.datetime):
        return _timestamp(when)
    raise TypeError(f"expected a datetime or epoch seconds, got {type(when).__name__}")


def _timestamp(when: datetime.datetime) -> float:
    """A datetime's epoch seconds; a naive one is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def retry_options(options: dict[str, Any], what: str) -> RetryOptions:
    """The options of Celery's ``retry(**options)`` (or ``retry_kwargs``) for the next attempt;
    TypeError naming any this engine does not implement, and for a malformed value."""
    unknown = set(options) - set(RETRY_OPTION_NAMES)
    if unknown:
        raise TypeError(f"{what} does not support the option(s): {', '.join(sorted(unknown))}")
    given = {name: value for name, value in options.items() if value is not None}
    expires = given.get("expires")
    if isinstance(expires, datetime.datetime):  # Celery: seconds from now, or a datetime
        given["expires"] = _timestamp(expires) - time.time()
    elif expires is not None and (isinstance(expires, bool) or not isinstance(expires, (int, float))):
        raise TypeError(f"{what}: expires must be seconds or a datetime, got {type(expires).__name__}")
    headers = given.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise TypeError(f"{what}: headers must be a dict")
    try:
        return msgspec.convert(given, RetryOptions, strict=False)
    except msgspec.ValidationError as exc:
        raise TypeError(f"{what}: {exc}") from None


def checked_retry_kwargs(task: Task) -> dict[str, Any]:
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
        retry_kwargs["eta"] = epoch_seconds(retry_kwargs["eta"])
    return retry_kwargs
