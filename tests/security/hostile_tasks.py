"""Tasks that misbehave on purpose, loaded with ``GEEKBLOG_TASK_MODULES=tests.security.hostile_tasks``.

Every blocking task ends by itself after ``cap`` seconds, or as soon as the file ``release`` exists,
so a test can always end it and no process is left waiting on a thread at exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from entrypoints.celery_compat import create_compatible_task


def touch(path: str) -> None:
    """NOT a task: a plain function that would leave a marker if anything ever ran it by name."""
    Path(path).touch()


def _released(release: str) -> bool:
    return bool(release) and os.path.exists(release)


@create_compatible_task(name="hostile.exit", max_retries=0)
def exit_now(code: int = 3) -> None:
    raise SystemExit(code)


@create_compatible_task(name="hostile.interrupt", max_retries=0)
def interrupt() -> None:
    raise KeyboardInterrupt


@create_compatible_task(name="hostile.async_exit", max_retries=0)
async def async_exit_now(code: int = 3) -> None:
    raise SystemExit(code)


@create_compatible_task(name="hostile.async_interrupt", max_retries=0)
async def async_interrupt() -> None:
    raise KeyboardInterrupt


@create_compatible_task(name="hostile.block_sync", max_retries=0)
def block_sync(release: str = "", cap: float = 30.0) -> str:
    """Sleeps in its thread past any time limit, never checking for cancellation."""
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline and not _released(release):
        time.sleep(0.02)
    return "released"


@create_compatible_task(name="hostile.block_async", max_retries=0)
async def block_async(release: str = "", cap: float = 30.0) -> str:
    """Awaits past any time limit (cancellable, as every await is)."""
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline and not _released(release):  # noqa: ASYNC110 - polls a file on purpose
        await asyncio.sleep(0.02)
    return "released"


@create_compatible_task(name="hostile.block_loop", max_retries=0)
async def block_loop(seconds: float = 3.0) -> str:
    """An ``async def`` that blocks the event loop itself with ``time.sleep``."""
    time.sleep(seconds)  # noqa: ASYNC251 - the point of this task
    return "unblocked"


@create_compatible_task(name="hostile.refuse_cancel", max_retries=0)
async def refuse_cancel(release: str = "", cap: float = 30.0) -> str:
    """Swallows every cancellation, so a time limit or a revoke cannot stop it."""
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline and not _released(release):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.02)
    return "released"


@create_compatible_task(name="hostile.quick_sync")
def quick_sync(value: int) -> int:
    return value * 2


@create_compatible_task(name="hostile.quick_async")
async def quick_async(value: int) -> int:
    await asyncio.sleep(0)
    return value * 3
