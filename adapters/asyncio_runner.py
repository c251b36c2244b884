"""The asyncio runner: coroutine tasks on the event loop, plain functions in a thread pool."""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from application.execution import current_job
from application.ports import Runner


class AsyncioRunner(Runner):
    """Runs tasks where they belong: ``async def`` on the loop, ``def`` in ``threads`` worker threads.

    An async task runs as its own asyncio task, so a coroutine that swallows its cancellation is
    abandoned, not waited for: its job still fails at its time limit or is revoked at once. A sync
    task runs in a copy of the caller's context (so it sees the current job); Python cannot stop a
    thread, so a cancelled sync task runs on until it next checks for cancellation (any
    ``update_state`` does). Its thread is then counted as ``stuck`` and later calls go to a fresh
    pool, so stuck threads never starve the jobs that come after them.
    """

    def __init__(self, threads: int = 10) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._retired: list[ThreadPoolExecutor] = []
        self._stuck = 0

    async def run(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], *, is_async: bool) -> Any:
        if is_async:
            outcome = await _abandon_on_cancel(asyncio.ensure_future(_capture(fn(*args, **kwargs))))
            if isinstance(outcome, _Raised):
                raise outcome.exc
            return outcome.value
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="geekblog-task")
        context = contextvars.copy_context()
        running: Future[Any] = self._pool.submit(functools.partial(context.run, _interruptible, fn, args, kwargs))
        try:
            return await asyncio.wrap_future(running)
        except asyncio.CancelledError:
            if not running.done():
                self._abandon(running)
            raise

    @property
    def stuck(self) -> int:
        return self._stuck

    def _abandon(self, running: Future[Any]) -> None:
        self._stuck += 1
        running.add_done_callback(self._unstuck)
        pool, self._pool = self._pool, None  # new calls get a fresh pool, with all its threads free
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=False)
            self._retired.append(pool)

    def _unstuck(self, _: Future[Any]) -> None:
        self._stuck -= 1

    async def close(self) -> None:
        pools = [*self._retired, *([self._pool] if self._pool else [])]
        self._pool = None
        self._retired = []
        for pool in pools:
            # Threads of cancelled sync tasks may still run; do not block shutdown on them.
            pool.shutdown(wait=False, cancel_futures=True)


def _interruptible(fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call ``fn`` in this pool thread, letting the job's context raise an exception inside it while it
    runs (a soft time limit): CPython delivers it at the thread's next Python instruction."""
    job = current_job.get()
    if job is None:
        return fn(*args, **kwargs)
    target = _ThreadInterrupt(threading.get_ident())
    job.allow_interrupt(target.interrupt)
    try:
        return fn(*args, **kwargs)
    finally:
        job.allow_interrupt(None)
        target.close()


class _ThreadInterrupt:
    """Raises an exception in one thread while it is open; closing it cancels one not yet delivered."""

    __slots__ = ("_fired", "_ident", "_lock", "_open")

    def __init__(self, ident: int) -> None:
        self._ident = ident
        self._lock = threading.Lock()
        self._open = True
        self._fired = False

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        with self._lock:
            if not self._open:
                return False
            self._fired = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._ident), ctypes.py_object(exc_type))
            return True

    def close(self) -> None:
        with self._lock:
            self._open = False
            if self._fired:  # not delivered yet (the function returned first): take it back
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(self._ident), None)


class _Returned:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Raised:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


async def _capture(coroutine: Any) -> _Returned | _Raised:
    """The coroutine's value or exception as data: an asyncio task that ends in SystemExit or
    KeyboardInterrupt would re-raise it out of the event loop and stop the whole service."""
    try:
        return _Returned(await coroutine)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        return _Raised(exc)


async def _abandon_on_cancel(task: asyncio.Future[Any]) -> Any:
    """Await ``task``; if this await is cancelled, cancel ``task`` too but do not wait for it to obey."""
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_consume)  # an abandoned task's late error is nobody's to report
        raise


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
