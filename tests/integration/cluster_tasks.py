"""Tasks the tests of several engines on one PostgreSQL database run (all engines of a test share one loop).

``hold`` waits for its gate (:func:`release`), recording when it starts and whether it was cancelled;
``report`` waits for its gate, reports progress three times and returns a result past the 8000 bytes of a
NOTIFY payload."""

from __future__ import annotations

import asyncio
from typing import Any

from entrypoints.celery_compat import create_compatible_task

BIG = 10_000
"""Characters of ``report``'s result."""

STARTED: list[str] = []
CANCELLED: list[str] = []
_GATES: dict[str, asyncio.Event] = {}


def gate(key: str) -> asyncio.Event:
    return _GATES.setdefault(key, asyncio.Event())


def release(key: str) -> None:
    gate(key).set()


def reset() -> None:
    STARTED.clear()
    CANCELLED.clear()
    _GATES.clear()


def release_all() -> None:
    for event in _GATES.values():
        event.set()


@create_compatible_task(name="cluster.hold", bind=True)
async def hold(self: Any, key: str) -> str:
    STARTED.append(self.request.id)
    try:
        await gate(key).wait()
    except asyncio.CancelledError:
        CANCELLED.append(self.request.id)
        raise
    return key


@create_compatible_task(name="cluster.report", bind=True)
async def report(self: Any, key: str) -> str:
    STARTED.append(self.request.id)
    await gate(key).wait()
    for step in range(3):
        await self.update_state(state="PROGRESS", meta={"done": step, "total": 3})
    return "x" * BIG


@create_compatible_task(name="cluster.quick")
def quick(value: int) -> int:
    return value


@create_compatible_task(name="cluster.big")
def big(value: int) -> str:
    return str(value) * BIG


@create_compatible_task(name="cluster.total")
def total(values: list[int]) -> int:
    return sum(values)
