"""Task bodies of the shared peer benchmark (``../shared/peers``), for GeekBlog Tasks.

``noop(x) -> x``, ``add1(x) -> x + 1``, ``total(xs) -> sum(xs)``, as in the harness's
``tasks_celery.py`` / ``tasks_huey.py``. Two registrations of each:

* ``peer.noop``, ``peer.add1``, ``peer.total``: plain ``def`` functions, as Celery and Huey run
  them (and as migrated Celery code is written); the engine runs them in its thread pool.
* ``peer.async.noop``, ``peer.async.add1``, ``peer.async.total``: ``async def`` variants, run on
  the engine's event loop (no thread hop), as ``bench/embedded_throughput.py`` uses.

The contenders pick one set with ``GEEKBLOG_PEER_TASKS=sync|async`` (default ``sync``).
Load it with ``GEEKBLOG_TASK_MODULES=bench.peer_tasks`` (repository root on ``PYTHONPATH``).
"""

from __future__ import annotations

import os
from typing import Any

from entrypoints.celery_compat import create_compatible_task

SYNC_PREFIX = "peer."
ASYNC_PREFIX = "peer.async."


def task_prefix() -> str:
    """The name prefix of the task set chosen by ``GEEKBLOG_PEER_TASKS`` (``sync`` or ``async``)."""
    kind = os.environ.get("GEEKBLOG_PEER_TASKS", "sync").strip().lower() or "sync"
    if kind not in ("sync", "async"):
        raise ValueError(f"GEEKBLOG_PEER_TASKS must be sync or async, not {kind!r}")
    return ASYNC_PREFIX if kind == "async" else SYNC_PREFIX


@create_compatible_task(name="peer.noop")
def noop(x: Any) -> Any:
    return x


@create_compatible_task(name="peer.add1")
def add1(x: int) -> int:
    return x + 1


@create_compatible_task(name="peer.total")
def total(xs: list[int]) -> int:
    return sum(xs)


@create_compatible_task(name="peer.async.noop")
async def anoop(x: Any) -> Any:
    return x


@create_compatible_task(name="peer.async.add1")
async def aadd1(x: int) -> int:
    return x + 1


@create_compatible_task(name="peer.async.total")
async def atotal(xs: list[int]) -> int:
    return sum(xs)
