"""GeekBlog Tasks embedded in the driver process, for the shared peer benchmark (``../shared/peers``).

    python bench.py --contender /path/to/main/bench/contender_embedded.py --json out.json

As an application embeds it: ``embedded_engine(db_path=...)`` runs on an asyncio loop in a
background thread of the driver (the harness's driver is synchronous), on a fresh SQLite file per
``reset()``. There is no worker process and no broker: the harness's worker lifecycle maps to

* ``start_worker()``: start the engine thread and return once ``embedded_engine`` has started (the
  database opened, jobs of a dead engine recovered, the dispatcher running);
* ``stop_worker()``: leave the ``embedded_engine`` block (the engine stops) and join the thread;
* ``worker_pids()``: the driver's own pid, so W6's "worker RSS" is the whole driver process: the
  harness, psutil and the engine together (what the embedding application pays);
* W5 "cold start" = from that in-process engine start to the result in hand. The interpreter and
  the engine's imports are already warm (imported when the contender loaded): unlike the other
  contenders' W5, it does NOT include starting a process. It does include opening the database
  file (whose lock is released by the store-only submitter first, see below).

Calls, from the driver thread (not the engine's loop):

* submit: ``noop.delay(x)``, which, off the loop, commits the job on the calling thread (the engine's
  SQLite writer is shared under a lock) and returns the ``AsyncResult``;
* wait: ``AsyncResult.get(timeout)`` (blocking on a ``threading.Event`` the engine sets on the job's
  terminal event: no polling, no round trip through the loop);
  ``wait_all`` (W1): ``ResultSet(handles).get()``, as Celery's contender joins a ``ResultSet``: finished
  jobs are read up to 512 per query on the driver's thread, only a job still running is waited on;
* chain / chord: ``chain(add1.s(0), add1.s(), ...).apply_async()``,
  ``chord([noop.s(i) ...], total.s()).apply_async()``; waited with ``get()``.
* no worker running (W5 and W6): ``noop.delay(x)`` goes to the engine's storage opened WITHOUT a
  dispatcher (:class:`peer_support.StoreOnly` with ``bind=True``): the same ``JobService.submit``,
  nothing claims the jobs until the engine starts.

Knobs: ``GEEKBLOG_PEER_LOOP=uvloop|asyncio`` (the event loop the application runs the engine on:
uvloop, the default, as the service uses; or the standard library's), ``GEEKBLOG_PEER_TASKS=sync|async``
(plain ``def`` tasks in the engine's thread pool, the default, or ``async def`` on its loop),
``GEEKBLOG_PEER_CONCURRENCY`` (max_concurrent_tasks, 2 as the harness's "worker concurrency 2").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import threading
from typing import Any

from contenders.base import BaseContender

sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
import peer_support

from entrypoints.celery_compat import AsyncResult, ResultSet, chain, chord, embedded_engine

LOOP = os.environ.get("GEEKBLOG_PEER_LOOP", "uvloop")
if LOOP not in ("uvloop", "asyncio"):
    raise SystemExit(f"GEEKBLOG_PEER_LOOP must be uvloop or asyncio, not {LOOP!r}")


class EngineThread:
    """``async with embedded_engine(...)`` on a loop in a daemon thread; ``stop()`` leaves the block."""

    pid = os.getpid()

    def __init__(self, db_path: str, concurrency: int) -> None:
        self.db_path = db_path
        self.concurrency = concurrency
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="geekblog-embedded-engine", daemon=True)

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the embedded engine did not start")
        if self.error is not None:
            raise RuntimeError(f"the embedded engine did not start: {self.error!r}") from self.error

    def _main(self) -> None:
        try:
            if LOOP == "uvloop":
                import uvloop

                uvloop.run(self._serve())
            else:
                asyncio.run(self._serve())
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def _engine(self) -> Any:
        """The ``embedded_engine(...)`` block to run (a subclass chooses other storage or options)."""
        return embedded_engine(db_path=self.db_path, max_concurrent_tasks=self.concurrency)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with self._engine():
            self._ready.set()
            await self._stop.wait()

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        if self.loop is not None and self._stop is not None and not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the embedded engine did not stop")


class CeleryCalls:
    """The harness's waits and canvases through the Celery-style API, on the peer tasks that
    ``GEEKBLOG_PEER_TASKS`` chooses (plain ``def`` or ``async def``); for any contender whose process has
    an engine bound to those calls."""

    def _choose_tasks(self) -> None:
        tasks = peer_support.peer_tasks()
        if tasks.task_prefix() == tasks.ASYNC_PREFIX:
            self.noop, self.add1, self.total, self.kind = tasks.anoop, tasks.aadd1, tasks.atotal, "async def"
        else:
            self.noop, self.add1, self.total, self.kind = tasks.noop, tasks.add1, tasks.total, "def"

    def wait_all(self, handles: list[AsyncResult], timeout: float) -> list[Any]:
        return ResultSet(handles).get(timeout=timeout)  # type: ignore[return-value]  # blocking off the loop

    def chain(self, n: int, start: int) -> AsyncResult:
        return chain(self.add1.s(start), *[self.add1.s() for _ in range(n - 1)]).apply_async()  # type: ignore[return-value]

    def chord(self, n: int) -> AsyncResult:
        return chord([self.noop.s(i) for i in range(n)], self.total.s()).apply_async()  # type: ignore[return-value]


class Contender(CeleryCalls, peer_support.FreshDatabase, BaseContender):
    name = "geekblog_embedded"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._choose_tasks()
        self.concurrency = int(os.environ.get("GEEKBLOG_PEER_CONCURRENCY", "2"))
        self.scratch = tempfile.mkdtemp(prefix="peers-geekblog-embedded-")
        self.db_path: str | None = None
        self._resets = 0
        self.engine: EngineThread | None = None
        self.store: peer_support.StoreOnly | None = None

    # --- "worker" lifecycle: the engine thread in this process -----------------------------------------
    def worker_cmd(self) -> list[str]:
        return ["(in-process) embedded_engine(db_path=...) on an event loop in a driver thread"]

    def start_worker(self) -> EngineThread:
        if self.db_path is None:
            self.reset()
        self._close_store()  # the engine takes the database's lock
        engine = EngineThread(str(self.db_path), self.concurrency)
        engine.start()
        self.engine = engine
        return engine

    def worker_pids(self, proc: Any) -> list[int]:
        return [os.getpid()]

    def stop_worker(self, proc: EngineThread, timeout: float = 20) -> None:
        try:
            proc.stop(timeout)
        finally:
            self.engine = None

    # --- storage / tasks: reset() comes from peer_support.FreshDatabase ------------------------

    def submit(self, x: Any) -> AsyncResult:
        if self.engine is None and self.store is None:  # no worker: store-only (see the module docstring)
            if self.db_path is None:
                self.reset()
            self.store = peer_support.StoreOnly(str(self.db_path), bind=True)
        return self.noop.delay(x)  # type: ignore[return-value]  # blocking off the loop

    def wait(self, handle: AsyncResult, timeout: float) -> Any:
        return handle.get(timeout=timeout)

    def backlog_footprint(self) -> dict[str, Any]:
        return peer_support.sqlite_footprint(self.db_path)

    def versions(self) -> dict[str, Any]:
        return {
            **peer_support.local_versions(),
            "worker_cmd": self.worker_cmd()[0],
            "max_concurrent_tasks": self.concurrency,
            "loop": LOOP,
            "tasks": f"peer noop/add1/total ({self.kind})",
            "submit": "noop.delay(x) from the driver thread (commits on that thread)",
            "wait": "AsyncResult.get() (threading.Event set by the engine); wait_all: ResultSet(handles).get()",
        }

    def close(self) -> None:
        self._close_store()
        if self.engine is not None:
            self.engine.stop()
            self.engine = None
        shutil.rmtree(self.scratch, ignore_errors=True)
