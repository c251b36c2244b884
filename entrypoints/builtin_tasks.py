"""Tasks every GeekBlog Tasks service offers: small building blocks for checks, demos and scripts."""

from __future__ import annotations

import asyncio
from typing import Any

from entrypoints.celery_compat import create_compatible_task


@create_compatible_task(name="geekblog.echo")
def echo(*args: Any, **kwargs: Any) -> Any:
    """Return the arguments: the single positional argument itself, else {"args": [...], "kwargs": {...}}."""
    if len(args) == 1 and not kwargs:
        return args[0]
    return {"args": list(args), "kwargs": kwargs}


@create_compatible_task(name="geekblog.add")
def add(x: float, y: float) -> float:
    """Add two numbers."""
    return x + y


@create_compatible_task(name="geekblog.sum")
def total(values: list[float]) -> float:
    """Sum a list of numbers (a chord body for a group of numbers)."""
    return sum(values)


@create_compatible_task(name="geekblog.sleep", bind=True)
async def sleep(self: Any, seconds: float, steps: int = 10) -> float:
    """Wait ``seconds``, reporting PROGRESS ``steps`` times: {"done": n, "total": steps}."""
    steps = max(int(steps), 1)
    for step in range(1, steps + 1):
        await asyncio.sleep(seconds / steps)
        await self.update_state(state="PROGRESS", meta={"done": step, "total": steps})
    return seconds


@create_compatible_task(name="geekblog.fail")
def fail(message: str = "failed on purpose") -> None:
    """Raise RuntimeError(message): to see failures, retries and error reporting."""
    raise RuntimeError(message)
