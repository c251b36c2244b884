"""The options of a task call, one definition for ``POST /jobs`` (``JobOptions``) and every task node of
``POST /workflows`` (``CanvasOptions``): same types, same bounds, same conversions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from domain.canvas import MAX_COUNTDOWN
from domain.queues import MAX_CONCURRENCY_LIMIT, QUEUE_NAME_PATTERN, QUEUE_NAME_RULE

QueueName = Annotated[
    str,
    Meta(
        # Checked by the domain, not here: a malformed name is a 422 naming the option (as every queue control).
        description="A named queue (Celery's queue / routing key): the job waits in `queue`, else in the queue"
        " its `routing_key` names, else in `default`; engines serve the queues of GEEKBLOG_QUEUES. A name is"
        f" {QUEUE_NAME_RULE} (`{QUEUE_NAME_PATTERN}`); any other string is refused with a 422",
    ),
]
Countdown = Annotated[float, Meta(ge=0, le=MAX_COUNTDOWN, description="Seconds to wait before starting")]
Priority = Annotated[int, Meta(ge=-1000, le=1000, description="Higher runs first")]
MaxRetries = Annotated[int, Meta(ge=0, le=1000)]
TimeLimit = Annotated[float, Meta(gt=0, description="Hard time limit in seconds")]
ConcurrencyKey = Annotated[
    str,
    Meta(
        description="At most `concurrency_limit` STARTED jobs with this key at once (e.g. `project:42`); the others"
        " wait queued, in claim order, on every engine of one database. 1 to 200 printable characters, else a 422"
    ),
]
ConcurrencyLimit = Annotated[
    int, Meta(description="How many jobs with `concurrency_key` may run at once: 1 to 10000 (default 1), else a 422")
]
Expires = (
    Annotated[float, Meta(ge=0, le=MAX_COUNTDOWN, description="Seconds from submission")]
    | Annotated[datetime, Meta(description="A time (ISO 8601; UTC if no offset)")]
)
"""Celery's ``expires``: a job not started by then ends REVOKED ("expired") without running."""


class CanvasOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The options of a task node in a canvas: those of ``JobOptions`` but ``eta``."""

    countdown: Countdown | None = None
    expires: Expires | None = None
    priority: Priority | None = None
    max_retries: MaxRetries | None = None
    time_limit: TimeLimit | None = None
    queue: QueueName | None = None
    routing_key: QueueName | None = None
    concurrency_key: ConcurrencyKey | None = None
    concurrency_limit: ConcurrencyLimit | None = None


class JobOptions(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How to run a job; each defaults to the task's own option."""

    countdown: Countdown | None = None
    eta: Annotated[datetime, Meta(description="When to start (ISO 8601; UTC if no offset)")] | None = None
    expires: Expires | None = None
    priority: Priority | None = None
    max_retries: MaxRetries | None = None
    time_limit: TimeLimit | None = None
    queue: QueueName | None = None
    routing_key: QueueName | None = None
    concurrency_key: ConcurrencyKey | None = None
    concurrency_limit: ConcurrencyLimit | None = None


CONTROL_RULES: Final = {
    "expires": f"a number of seconds from 0 to {MAX_COUNTDOWN:.0f} or an ISO 8601 time",
    "queue": f"a queue name: {QUEUE_NAME_RULE}",
    "routing_key": f"a queue name: {QUEUE_NAME_RULE}",
    "concurrency_key": "a string of 1 to 200 printable characters",
    "concurrency_limit": f"an integer from 1 to {MAX_CONCURRENCY_LIMIT}",
}
"""The rule of each option refused with a 422 ``invalid-call-option`` (issue 14: every queue control and
``expires``) even when msgspec refuses it while decoding (a wrong type, a bound); the other options' type
errors stay 400s."""


def malformed_control(option: str, message: str) -> str | None:
    """The detail of the 422 for an option msgspec refused with ``message``, if ``option`` is one of
    :data:`CONTROL_RULES`, else None."""
    rule = CONTROL_RULES.get(option)
    return None if rule is None else f"{option} must be {rule}: {message}"


def canvas_options(options: object) -> CanvasOptions:
    """``options`` converted as Litestar converts a ``JobOptions`` body (``strict=False``); raises
    :class:`msgspec.ValidationError` naming the bad option."""
    return msgspec.convert(options, CanvasOptions, strict=False)


def expires_at(expires: float | datetime | None, now: float) -> float | None:
    """Epoch seconds for an ``expires`` option: seconds from ``now``, or a time (naive is UTC)."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return (expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)).timestamp()
    return now + expires
