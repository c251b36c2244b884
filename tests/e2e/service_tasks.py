"""Tasks the end-to-end tests run inside the real service process."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from entrypoints.celery_compat import create_compatible_task


@create_compatible_task(name="e2e.add")
def add(x: int, y: int) -> int:
    return x + y


@create_compatible_task(name="e2e.total")
def total(values: list[int]) -> int:
    return sum(values)


@create_compatible_task(name="e2e.steps", bind=True)
async def steps(self: Any, count: int, pause: float = 0.05) -> int:
    """Report PROGRESS ``count`` times, ``pause`` seconds apart."""
    for done in range(1, count + 1):
        await asyncio.sleep(pause)
        await self.update_state(state="PROGRESS", meta={"done": done, "total": count})
    return count


@create_compatible_task(name="e2e.forever")
async def forever() -> None:
    await asyncio.sleep(3600)


@create_compatible_task(name="e2e.fail")
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@create_compatible_task(name="e2e.pid")
async def pid(gate: str | None = None, timeout: float = 60.0) -> int:
    """The id of the process that ran it; with ``gate``, once that file exists (the test opens the gate)."""
    if gate is not None:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(os.path.exists, gate):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gate {gate} was never opened")
            await asyncio.sleep(0.02)
    return os.getpid()
