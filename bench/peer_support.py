"""Helpers shared by the two GeekBlog Tasks contenders of the peer benchmark (``../shared/peers``).

* :class:`LoopThread`: an asyncio loop running in a daemon thread of the driver, so the harness's
  synchronous calls can reach coroutines (``run_coroutine_threadsafe``).
* :class:`StoreOnly`: the engine's storage and :class:`~application.job_service.JobService` with the
  dispatcher NOT started. The harness submits with "no worker running" in W5 (cold start) and W6
  (backlog); for GeekBlog Tasks the worker and the store are one engine, so "no worker" means: the
  jobs are committed to the SQLite file by the same ``JobService.submit`` that ``.delay()`` and
  ``POST /jobs`` use, and nothing claims them until an engine (service or embedded) is started on
  the file. One engine owns a file at a time (``<db>.lock``), so the store is closed before a worker
  starts.
* small things: a free TCP port, the size of the db/wal/shm files, versions.
"""

from __future__ import annotations

import asyncio
import glob
import importlib.metadata
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
for _entry in (str(REPO), str(BENCH_DIR)):
    if _entry not in sys.path:
        sys.path.append(_entry)  # appended: the harness's own folder stays first (its `bench.py`)


def peer_tasks() -> Any:
    """The task module, imported as the top-level ``peer_tasks`` (the name ``bench`` is the harness's
    ``bench.py`` in the driver process). Task names, not module names, identify tasks."""
    import peer_tasks as module

    return module


class LoopThread:
    """An event loop running forever in a daemon thread; :meth:`run` blocks on a coroutine there."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.run(self.loop.shutdown_default_executor())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


class StoreOnly:
    """Submit into the SQLite file (or the PostgreSQL database at ``database_url``) with no engine
    dispatching (see the module docstring).

    With ``bind=True`` the Celery-style calls (``noop.delay(x)``) are routed to this store while it is
    open, exactly as they would be to a running ``embedded_engine``; else use :meth:`submit`.
    """

    def __init__(self, db_path: str | None = None, *, database_url: str | None = None, bind: bool = False) -> None:
        from entrypoints.compat import binding
        from entrypoints.container import Container
        from entrypoints.settings import Settings

        self._binding = binding if bind else None
        self._lt = LoopThread("peers-store-only")
        if database_url is not None:  # PostgreSQL: no lock, other engines may share it
            settings = Settings(database_url=database_url)
        else:
            settings = Settings(db_path=str(db_path), persistence="sqlite")
        container = Container(settings=settings)
        self.engine = container.engine()
        try:
            self._lt.run(self.engine.repo.open())
        except BaseException:
            self._lt.close()
            raise
        if self._binding is not None:
            self._binding.activate(self.engine, self._lt.loop)

    def submit(self, task: str, args: list[Any]) -> str:
        from domain.canvas import Signature

        return self._lt.run(self.engine.jobs.submit(Signature(task=task, args=args))).id

    def close(self) -> None:
        if self._binding is not None:
            self._binding.deactivate(self.engine)
            self._binding = None
        try:
            self._lt.run(self.engine.repo.close())
        finally:
            self._lt.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlite_footprint(db_path: str | None) -> dict[str, Any]:
    """Bytes of ``<db>``, ``<db>-wal`` and ``<db>-shm`` (the harness's ``sqlite_bytes_total`` key),
    and the number of queued jobs."""
    if db_path is None:
        return {}
    files = {
        os.path.basename(f): os.path.getsize(f) for f in sorted(glob.glob(db_path + "*")) if not f.endswith(".lock")
    }
    out: dict[str, Any] = {"sqlite_bytes_total": sum(files.values()), "sqlite_files": files}
    if os.path.exists(db_path):
        try:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                (queued,) = db.execute("SELECT count(*) FROM jobs WHERE state IN ('PENDING', 'RETRY')").fetchone()
            out["queue_len"] = int(queued)
        except sqlite3.Error as exc:
            out["queue_len_error"] = str(exc)
    return out


def project_version() -> str:
    try:
        return importlib.metadata.version("geekblog-tasks")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def git_commit() -> str:
    """``git describe --always --dirty`` of the repository (other work may be uncommitted)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def local_versions() -> dict[str, str]:
    return {
        "geekblog-tasks": project_version(),
        "commit": git_commit(),
        "sqlite": sqlite3.sqlite_version,
        "python": platform.python_version(),
    }


class FreshDatabase:
    """The contenders' storage reset: close the store-only submitter, delete the last database, and
    point the next one at a new folder under ``scratch``."""

    scratch: str
    db_path: str | None
    store: StoreOnly | None
    _resets: int

    def _close_store(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def reset(self) -> None:
        self._close_store()
        if self.db_path is not None:
            shutil.rmtree(os.path.dirname(self.db_path), ignore_errors=True)
        self._resets += 1
        folder = os.path.join(self.scratch, f"reset-{self._resets}")
        os.makedirs(folder)
        self.db_path = os.path.join(folder, "peers.db")
