"""Waiting in tests without a sleep that hopes: for something to happen (with a deadline), or for
something not to happen (watched over a period, failing the moment it does)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


async def eventually(predicate: Callable[[], object], timeout: float = 5.0, what: str = "the condition") -> None:
    """Return as soon as ``predicate()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        await asyncio.sleep(0.005)


async def stays(predicate: Callable[[], object], seconds: float, what: str = "the condition") -> None:
    """Check ``predicate()`` stays true for ``seconds``, failing the moment it does not."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"{what} stopped holding"
        await asyncio.sleep(0.005)
    assert predicate(), f"{what} stopped holding"


async def not_done_within(future: asyncio.Future[object], seconds: float) -> None:
    """Fail if ``future`` completes within ``seconds`` (it is left running)."""
    done, _ = await asyncio.wait({future}, timeout=seconds)
    assert not done, f"it finished within {seconds} s: {future.result()!r}"
