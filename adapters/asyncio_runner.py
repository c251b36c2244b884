"""The asyncio runner: coroutine tasks on the event loop, plain functions in a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from application.ports import Runner


class AsyncioRunner(Runner):
    """Runs tasks where they belong: ``async def`` on the loop, ``def`` in ``threads`` worker threads.

    A sync task runs in a copy of the caller's context (so it sees the current job). Cancelling an
    async task cancels its coroutine; a cancelled sync task's thread runs on until the task checks
    for cancellation (any ``update_state`` does), since Python cannot stop a thread from outside.
    """

    def __init__(self, threads: int = 10) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], *, is_async: bool) -> Any:
        if is_async:
            return await fn(*args, **kwargs)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="geekblog-task")
        context = contextvars.copy_context()
        call = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # Threads of cancelled sync tasks may still run; do not block shutdown on them.
            pool.shutdown(wait=False, cancel_futures=True)
