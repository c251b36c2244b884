"""Tasks of the event stream tests: each waits for its gate (opened by the test) before reporting progress."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from entrypoints.celery_compat import create_compatible_task

GATES: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)


@create_compatible_task(name="stream.steps", bind=True)
async def steps(self: Any, count: int, gate: str) -> int:
    await GATES[gate].wait()
    for step in range(count):
        await self.update_state(state="PROGRESS", meta={"done": step})
    return count
