"""Tasks for the limit, storability and long-chain tests; ``RUNS`` counts what actually executed."""

from __future__ import annotations

import time
from typing import Any

import entrypoints.builtin_tasks  # noqa: F401  (geekblog.add, geekblog.echo)
from entrypoints.celery_compat import create_compatible_task

RUNS: dict[str, int] = {}
STEP_TIMES: list[float] = []


def _ran(name: str) -> None:
    RUNS[name] = RUNS.get(name, 0) + 1


@create_compatible_task(name="limits.echo")
async def echo(value: Any) -> Any:
    """Return the argument: each group member given the previous result returns all of it."""
    _ran("echo")
    return value


@create_compatible_task(name="limits.huge_int")
def huge_int() -> int:
    """A result no store can hold: past 64 bits."""
    _ran("huge_int")
    return 2**64


@create_compatible_task(name="limits.big_text")
def big_text(size: int) -> str:
    _ran("big_text")
    return "x" * size


@create_compatible_task(name="limits.big_meta", bind=True)
async def big_meta(self: Any, size: int) -> str:
    _ran("big_meta")
    await self.update_state(state="PROGRESS", meta={"blob": "x" * size})
    return "done"


@create_compatible_task(name="limits.step")
async def step(previous: int | None = None) -> int:
    """A chain step doing nothing but note the CPU time of the event loop's thread, where an async step and
    the engine's work for it run: other processes and other threads of this one (left by earlier tests,
    say) do not count."""
    STEP_TIMES.append(time.thread_time())
    return 0


@create_compatible_task(name="limits.pair")
def pair(x: int, y: int) -> int:
    return x + y
