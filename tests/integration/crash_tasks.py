"""Tasks of the crash-recovery test, imported by ``crash_child.py`` (through ``task_modules``).

Every execution appends one line ``<phase> <job id> <attempt>`` to the runs log named by
``CRASH_RUNS_LOG`` (opened with O_APPEND, one ``write()`` per line, so a SIGKILL never leaves a
half line and lines of concurrent tasks never interleave). ``CRASH_PHASE`` names the process.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from entrypoints.celery_compat import create_compatible_task, group

_RUNS_LOG = os.environ.get("CRASH_RUNS_LOG")
_PHASE = os.environ.get("CRASH_PHASE", "?")
_FD = os.open(_RUNS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _RUNS_LOG else None


def record_run(task: Any) -> None:
    """Log that this attempt of the current job started running."""
    if _FD is None:
        return
    request = task.request
    os.write(_FD, f"{_PHASE} {request.id} {request.retries + 1}\n".encode())


@create_compatible_task(name="crash.add", bind=True)
async def add(self: Any, x: int, y: int, delay: float = 0.0) -> int:
    record_run(self)
    if delay:
        await asyncio.sleep(delay)
    return x + y


@create_compatible_task(name="crash.add_sync", bind=True)
def add_sync(self: Any, x: int, y: int, delay: float = 0.0) -> int:
    record_run(self)
    if delay:
        time.sleep(delay)
    return x + y


@create_compatible_task(name="crash.mul", bind=True)
async def mul(self: Any, x: int, y: int) -> int:
    record_run(self)
    return x * y


@create_compatible_task(name="crash.tsum", bind=True)
async def tsum(self: Any, values: list[int]) -> int:
    record_run(self)
    await asyncio.sleep(0.005)
    return sum(values)


@create_compatible_task(name="crash.fanout", bind=True)
def fanout(self: Any, n: int) -> None:
    """Replace this job with a group of ``n`` members: its result becomes ``[0, 2, 4, ...]``."""
    record_run(self)
    self.replace(group(add.s(i, i, delay=0.01) for i in range(n)))


@create_compatible_task(name="crash.block", bind=True)
async def block(self: Any) -> int:
    """Hangs on its first attempt (the test kills the process then); returns ``request.retries``."""
    record_run(self)
    if self.request.retries == 0:
        await asyncio.sleep(120)
    return int(self.request.retries)


@create_compatible_task(name="crash.block_no_retry", bind=True, retry_on_worker_lost=False)
def block_no_retry(self: Any) -> int:
    """Like ``block`` (in a worker thread), but a lost worker fails it instead of re-running it."""
    record_run(self)
    if self.request.retries == 0:
        time.sleep(120)
    return int(self.request.retries)
