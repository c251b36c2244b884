"""GeekBlog Tasks on PostgreSQL as Celery users deploy it: the driver submits with ``.delay()`` and
``geekblog worker`` processes run the jobs, for the shared peer benchmark.

    GEEKBLOG_PEER_ENGINES=1 python bench.py --contender /path/to/bench/contender_pg_client.py --json out.json

This is how the harness measures procrastinate and PgQueuer (their driver enqueues into the database, a
worker process runs the jobs): here the driver embeds ``embedded_engine(database_url=..., run_jobs=False)``
on an event loop in a background thread (it stores, follows and waits, and runs nothing), and the
engines are ``GEEKBLOG_PEER_ENGINES`` ``geekblog worker`` processes (concurrency 2 each), so "one engine"
is one process that runs jobs, as for the peers. The contender is named ``geekblog_pg_client_<N>``.

* submit: ``noop.delay(x)`` from the driver thread: committed before it returns (the ``AsyncResult``).
* wait: ``AsyncResult.get(timeout)``; W1's ``wait_all``: ``ResultSet(handles).get()``. Results arrive as
  the workers' events (LISTEN/NOTIFY), or are read when already stored.
* chain / chord: ``chain(...).apply_async()``, ``chord(...).apply_async()``, waited with ``get()``.
* no worker running (W5, W6 backlog): as the other PostgreSQL contender (:class:`peer_support.StoreOnly`
  bound to the Celery-style calls).

Storage, cost accounting and memory are :mod:`contender_postgres`'s (a fresh database per ``reset()``;
the driver's CPU now includes the client engine's thread).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
import contender_embedded
import contender_postgres
import peer_support
from contenders.base import BaseContender

from entrypoints.celery_compat import embedded_engine


class ClientThread(contender_embedded.EngineThread):
    """``embedded_engine(database_url=..., run_jobs=False)`` on a loop in a driver thread."""

    def __init__(self, database_url: str) -> None:
        super().__init__(database_url, 1)

    def _engine(self) -> Any:
        return embedded_engine(database_url=self.db_path, run_jobs=False)


class Contender(contender_embedded.CeleryCalls, contender_postgres.Contender):
    name = "geekblog_pg_client_1"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.name = f"geekblog_pg_client_{self.engines}"
        self.extra = "worker"
        self.recheck = None
        self._choose_tasks()
        self.client: ClientThread | None = None

    # --- engines: N x geekblog worker, and the client in this process -------------------------------
    def worker_cmd(self) -> list[str]:
        return [self.exe, "worker"]

    def start_worker(self) -> subprocess.Popen[bytes]:
        if self.database_url is None:
            self.reset()
        self._close_store()
        proc: subprocess.Popen[bytes] = BaseContender.start_worker(self)  # engine 1: geekblog worker
        self.proc = proc
        self.apis = []
        self.others = []
        for number in range(2, self.engines + 1):
            self._start_engine(number, self.worker_cmd())
        client = ClientThread(str(self.database_url))
        client.start()
        self.client = client
        self._turn = self._waited = self._tasks = 0
        self._mark = None
        return proc

    def stop_worker(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.stop(timeout)
        super().stop_worker(proc, timeout)
        self.proc = None

    # --- tasks ------------------------------------------------------------------------------------------
    def submit(self, x: Any) -> Any:
        if self.client is None:  # no engine running: the Celery-style call goes to a store-only engine
            if self.database_url is None:
                self.reset()
            if self.store is None:
                self.store = peer_support.StoreOnly(database_url=str(self.database_url), bind=True)
            return self.noop.delay(x)
        if self._mark is not None:
            self._tasks += 1
        return self.noop.delay(x)

    def wait(self, handle: Any, timeout: float) -> Any:
        value = handle.get(timeout=timeout)
        self._waited += 1
        if self._waited == contender_postgres.WARMUP and self._mark is None and self.proc is not None:
            self._take_mark()  # the warm-up is over: what follows is the timed part
        return value

    def versions(self) -> dict[str, Any]:
        out = super().versions()
        out.pop("client", None)  # the service's HTTP client: none here
        out.update(
            worker_cmd=f"{self.engines} x geekblog worker; the driver embeds embedded_engine(run_jobs=False)",
            submit="noop.delay(x) from the driver thread (committed before it returns)",
            wait="AsyncResult.get() / ResultSet.get() (the workers' events over LISTEN/NOTIFY)",
        )
        return out
