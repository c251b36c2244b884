"""Named queues: which queue a job waits in, and the ``name[:concurrency],...`` lists engines serve.

Celery routes a message to a queue through its routes; here a job names its queue itself: its ``queue``
option, else its ``routing_key`` (with Celery's default direct exchange a routing key names the queue
of the same name), else :data:`DEFAULT_QUEUE`.
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_QUEUE: Final = "default"

QUEUE_NAME_PATTERN: Final = r"^[A-Za-z0-9_.@/+-]{1,200}$"
"""What a queue name may be: 1 to 200 letters, digits and ``_ . @ / + -`` (no spaces, commas or colons)."""
QUEUE_NAME_RULE: Final = "1 to 200 letters, digits or _ . @ / + - (no spaces, commas or colons)"
_NAME: Final = re.compile(QUEUE_NAME_PATTERN)


def effective_queue(queue: str | None, routing_key: str | None) -> str:
    """The queue a job with these options waits in."""
    return queue or routing_key or DEFAULT_QUEUE


def check_queue_name(name: object, what: str = "queue") -> str:
    """``name`` if it is a valid queue name; TypeError / ValueError saying why not."""
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a queue name: {QUEUE_NAME_RULE}")
    return name


def parse_queues(text: str) -> dict[str, int | None]:
    """``"default:8,ai:2"`` as ``{"default": 8, "ai": 2}``; a name without ``:n`` is None (limited only
    by the engine's total concurrency, as is any queue's). ValueError with a clear message when a name is
    malformed or repeated, or a concurrency is not a whole number of at least 1."""
    queues: dict[str, int | None] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"{text!r}: an empty queue name (expected name[:concurrency],...)")
        name, sep, count = item.partition(":")
        check_queue_name(name.strip())
        name = name.strip()
        if name in queues:
            raise ValueError(f"{text!r}: queue {name!r} is named twice")
        limit: int | None = None
        if sep:
            if not re.fullmatch(r"[0-9]{1,9}", count.strip()) or int(count) < 1:
                raise ValueError(f"{text!r}: the concurrency of {name!r} must be a whole number of at least 1")
            limit = int(count.strip())
        queues[name] = limit
    return queues


MAX_CONCURRENCY_LIMIT: Final = 10_000


def check_concurrency(key: object, limit: object) -> None:
    """Refuse a malformed concurrency key (a str of 1 to 200 printable characters) or limit (an int of 1 to
    10,000, given only with a key): TypeError / ValueError saying why."""
    if key is None:
        if limit is not None:
            raise ValueError("concurrency_limit needs a concurrency_key")
        return
    if not isinstance(key, str):
        raise TypeError(f"concurrency_key must be a str, got {type(key).__name__}")
    if not 1 <= len(key) <= 200 or not key.isprintable():
        raise ValueError(f"concurrency_key must be 1 to 200 printable characters, got {key[:40]!r}")
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"concurrency_limit must be an int, got {type(limit).__name__}")
    if not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
        raise ValueError(f"concurrency_limit must be 1 to {MAX_CONCURRENCY_LIMIT}, got {limit}")


_RATE_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0}


def rate_interval(rate_limit: object) -> float | None:
    """Seconds between two starts for Celery's ``rate_limit`` (``celery.utils.time.rate``): ``"10/m"``,
    ``"2/h"``, ``"0.5/s"``, or a number (a string or not) meaning per second; None when there is no limit
    (None, 0, ``"0/m"``). Celery gives each task a token bucket of capacity 1, so tasks start at most once
    per interval, with no burst: the interval is ``1 / (tasks per second)``. TypeError / ValueError when
    malformed."""
    if rate_limit is None:
        return None
    if isinstance(rate_limit, bool) or not isinstance(rate_limit, (str, int, float)):
        raise TypeError(f"rate_limit must be a str such as '10/m' or a number, got {type(rate_limit).__name__}")
    if isinstance(rate_limit, str):
        count, _, unit = rate_limit.partition("/")  # as celery.utils.time.rate reads it
        try:
            per_second = float(count) / _RATE_UNITS[unit.strip() or "s"]
        except (ValueError, KeyError):
            raise ValueError(
                f"rate_limit {rate_limit[:40]!r} is not a rate: a number of tasks, optionally /s, /m or /h"
                " ('10/m'; a number alone is per second)"
            ) from None
    else:
        per_second = float(rate_limit)
    if per_second != per_second or per_second < 0 or per_second == float("inf"):
        raise ValueError(f"rate_limit must be a finite number of tasks, not below 0, got {rate_limit!r}")
    if per_second == 0:
        return None
    interval = 1.0 / per_second
    if interval > 366 * 86_400:
        raise ValueError(f"rate_limit {rate_limit!r} allows less than one task a year")
    return interval
