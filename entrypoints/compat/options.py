"""Celery's call options (``apply_async(**options)``, ``.set(...)``): each one honoured, or refused by name.

A migrated option this engine does not implement raises TypeError naming it; none is dropped.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

SUPPORTED: frozenset[str] = frozenset(
    {
        "task_id",
        "countdown",
        "eta",
        "expires",
        "priority",
        "max_retries",
        "time_limit",
        "soft_time_limit",
        "queue",
        "routing_key",
        "concurrency_key",
        "concurrency_limit",
        "headers",
        "ignore_result",
        "shadow",
        "link",
        "link_error",
        "serializer",
        "add_to_parent",
        "throw",
        "group_id",
        "body",
        "argsrepr",
        "kwargsrepr",
        "idempotency_key",
        *("app_id", "reply_to", "correlation_id", "content_type", "content_encoding"),
    }
)
"""Accepted options. ``serializer`` must be ``"json"``; ``add_to_parent`` is always true here;
``throw`` matters to eager runs only; ``group_id`` names a chord's header group; ``argsrepr`` /
``kwargsrepr`` stand for the arguments in log lines; the AMQP message properties (``app_id`` ...)
are stored and shown in ``request.properties``. ``idempotency_key`` names a whole submission (``apply_async``
of a task, a signature or a canvas): a repeat of the same call returns what the first one stored."""

_PROPERTIES = ("app_id", "reply_to", "correlation_id", "content_type", "content_encoding")

_AS_IS = (
    "priority",
    "max_retries",
    "time_limit",
    "soft_time_limit",
    "queue",
    "routing_key",
    "shadow",
    "concurrency_key",
    "concurrency_limit",
)


def check_options(options: dict[str, Any]) -> None:
    """Raise TypeError for any option this engine does not implement (never a silent drop)."""
    unknown = set(options) - SUPPORTED
    if unknown:
        raise TypeError(
            f"unsupported option(s): {', '.join(sorted(unknown))} (see the README's differences from Celery)"
        )
    if options.get("serializer", "json") != "json":
        raise TypeError(f"serializer {options['serializer']!r} is not supported: arguments and results are JSON")
    if options.get("add_to_parent", True) is not True:
        raise TypeError("add_to_parent=False is not supported: a task's children are always recorded")
    headers = options.get("headers")
    if headers is not None and not isinstance(headers, dict):
        raise TypeError("headers must be a dict")


def call_options(options: dict[str, Any]) -> dict[str, Any]:
    """The :class:`domain.canvas.Signature` fields for Celery ``options`` (times made epoch seconds)."""
    fields: dict[str, Any] = {name: options[name] for name in _AS_IS if options.get(name) is not None}
    if options.get("task_id") is not None:
        fields["id"] = str(options["task_id"])
    if options.get("countdown") is not None:
        fields["countdown"] = float(options["countdown"])
    if options.get("eta") is not None:
        fields["eta"] = epoch(options["eta"])
    if options.get("expires") is not None:
        expires = options["expires"]
        # Celery: a number of seconds from now, or a datetime.
        fields["expires"] = time.time() + float(expires) if isinstance(expires, (int, float)) else epoch(expires)
    if options.get("headers"):
        fields["headers"] = dict(options["headers"])
    if options.get("ignore_result") is not None:
        fields["ignore_result"] = bool(options["ignore_result"])
    for name in ("argsrepr", "kwargsrepr"):
        if options.get(name) is not None:
            fields[name] = str(options[name])
    properties = {name: options[name] for name in _PROPERTIES if options.get(name) is not None}
    if properties:
        fields["properties"] = properties
    return fields


def epoch(when: object) -> float:
    """Epoch seconds for a datetime (a naive one is UTC, as Celery takes it), an ISO string or a number."""
    if isinstance(when, bool):
        raise TypeError("expected a datetime or epoch seconds, got a bool")
    if isinstance(when, (int, float)):
        return float(when)
    moment = datetime.datetime.fromisoformat(when) if isinstance(when, str) else when
    if isinstance(moment, datetime.datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.timestamp()
    raise TypeError(f"expected a datetime or epoch seconds, got {type(when).__name__}")
