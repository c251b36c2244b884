"""Which engine the Celery-style calls talk to, and how a call reaches it from any thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from application.engine import Engine
from entrypoints.compat.threads import ThreadBridge

T = TypeVar("T")

_active: list[tuple[Engine, asyncio.AbstractEventLoop]] = []
_bridges: dict[int, ThreadBridge] = {}


class NoEngineRunning(RuntimeError):
    """A Celery-style call was made with no engine started (use ``embedded_engine`` or the service)."""


def activate(engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
    """Celery-style calls use ``engine`` (started, on ``loop``) until :func:`deactivate`. Calls from plain
    threads go through its :class:`ThreadBridge` (one of its hooks, as the container wires it; an engine
    built without one gets one that reads and commits through the loop)."""
    bridge = next((hook for hook in engine.hooks if isinstance(hook, ThreadBridge)), None)
    if bridge is None:
        bridge = ThreadBridge(jobs=engine.jobs, bus=engine.bus, starter=None, access=None)
        loop.call_soon_threadsafe(bridge.engine_started)
    bridge.use_loop(loop)
    _bridges[id(engine)] = bridge
    _active.append((engine, loop))


def deactivate(engine: Engine) -> None:
    for index in range(len(_active) - 1, -1, -1):
        if _active[index][0] is engine:
            del _active[index]
            if not any(active is engine for active, _ in _active):
                _bridges.pop(id(engine), None)
            return


def active() -> tuple[Engine, asyncio.AbstractEventLoop]:
    if not _active:
        raise NoEngineRunning("no engine is running: start one with `async with embedded_engine(...)`")
    return _active[-1]


def engine() -> Engine:
    return active()[0]


def bridge() -> ThreadBridge:
    """The active engine's bridge for blocking calls (see :mod:`entrypoints.compat.threads`)."""
    return _bridges[id(active()[0])]


def off_loop() -> tuple[Engine, asyncio.AbstractEventLoop] | None:
    """The active engine and its loop when the caller runs in no event loop (a plain or worker
    thread), so it can use the blocking calls of :func:`bridge`; None on a loop."""
    engine_, loop = active()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return engine_, loop
    return None


def call(make: Callable[[Engine], Coroutine[Any, Any, T]]) -> Awaitable[T] | T:
    """Run ``make(engine)`` on the engine's loop.

    On the loop itself this returns an already scheduled task to await (so a call that is not
    awaited still happens); from another thread (a sync task in the engine's pool) it blocks and
    returns the value.
    """
    engine_, loop = active()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return asyncio.ensure_future(make(engine_))
    if running is not None:
        raise RuntimeError("Celery-style calls must run on the engine's event loop or in a worker thread")
    return asyncio.run_coroutine_threadsafe(make(engine_), loop).result()
