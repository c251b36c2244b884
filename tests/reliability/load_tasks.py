"""Tasks of the crash-loop harness, run by the real service (``GEEKBLOG_TASK_MODULES=tests.reliability.load_tasks``).

Every result is computed from the arguments alone, so the harness knows what each job and workflow
must end with. ``delay`` arguments only make a run take time (so that kills land mid-run); they never
change a result.

Every execution appends one line ``<job id> <attempt>`` to the file named by
``GEEKBLOG_RELIABILITY_RUNS_LOG`` (opened with O_APPEND, one ``os.write`` per line: a SIGKILL never leaves
half a line and lines of concurrent tasks never interleave), so runs can be counted across processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from entrypoints.celery_compat import create_compatible_task, group

RUNS_LOG_ENV = "GEEKBLOG_RELIABILITY_RUNS_LOG"
MAX_RETRIES = 10
"""High enough that the kills of a run never exhaust a job's attempts (``WorkerLostError``)."""

_RUNS_LOG = os.environ.get(RUNS_LOG_ENV)
_FD = os.open(_RUNS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if _RUNS_LOG else None


class Flaky(Exception):
    """Raised by ``rl.flaky`` on its first attempts; ``autoretry_for`` retries it."""


def record_run(task: Any) -> None:
    """Log that this attempt of the current job started running."""
    if _FD is None:
        return
    request = task.request
    os.write(_FD, f"{request.id} {request.retries + 1}\n".encode())


def digest_of(text: str, rounds: int) -> str:
    """The result of ``rl.digest`` (also used by the harness to compute the expectation)."""
    value = text.encode()
    for _ in range(rounds):
        value = hashlib.sha256(value).hexdigest().encode()
    return value.decode()[:16]


@create_compatible_task(name="rl.add", bind=True, max_retries=MAX_RETRIES)
async def add(self: Any, x: int, y: int, delay: float = 0.0) -> int:
    record_run(self)
    if delay:
        await asyncio.sleep(delay)
    return x + y


@create_compatible_task(name="rl.add_sync", bind=True, max_retries=MAX_RETRIES)
def add_sync(self: Any, x: int, y: int, delay: float = 0.0) -> int:
    """Like ``rl.add``, in the engine's thread pool."""
    record_run(self)
    if delay:
        time.sleep(delay)
    return x + y


@create_compatible_task(name="rl.mul", bind=True, max_retries=MAX_RETRIES)
async def mul(self: Any, x: int, y: int) -> int:
    record_run(self)
    return x * y


@create_compatible_task(name="rl.tsum", bind=True, max_retries=MAX_RETRIES)
async def tsum(self: Any, values: list[int], delay: float = 0.0) -> int:
    record_run(self)
    if delay:
        await asyncio.sleep(delay)
    return sum(values)


@create_compatible_task(name="rl.digest", bind=True, max_retries=MAX_RETRIES)
def digest(self: Any, text: str, rounds: int, delay: float = 0.0) -> str:
    record_run(self)
    if delay:
        time.sleep(delay)
    return digest_of(text, rounds)


@create_compatible_task(
    name="rl.flaky", bind=True, max_retries=MAX_RETRIES, autoretry_for=(Flaky,), default_retry_delay=0.05
)
async def flaky(self: Any, x: int, fails: int, delay: float = 0.0) -> int:
    """Fails while ``request.retries < fails`` (deterministically), then returns ``3 * x + 1``."""
    record_run(self)
    if delay:
        await asyncio.sleep(delay)
    if self.request.retries < fails:
        raise Flaky(f"attempt {self.request.retries + 1} of a job that fails {fails} time(s)")
    return 3 * x + 1


@create_compatible_task(name="rl.sleepy", bind=True, max_retries=MAX_RETRIES)
async def sleepy(self: Any, x: int, seconds: float) -> int:
    """A long job for the harness to cancel: sleeps, then returns ``x``."""
    record_run(self)
    await asyncio.sleep(seconds)
    return x


@create_compatible_task(name="rl.fanout", bind=True, max_retries=MAX_RETRIES)
def fanout(self: Any, n: int) -> None:
    """Replace this job with a group of ``n`` members: its result becomes ``[0, 2, 4, ...]``."""
    record_run(self)
    self.replace(group(add.s(i, i, delay=0.01) for i in range(n)))
