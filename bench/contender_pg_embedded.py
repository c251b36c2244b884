"""GeekBlog Tasks embedded in the driver process on PostgreSQL, for the shared peer benchmark.

    python bench.py --contender /path/to/bench/contender_pg_embedded.py --json out.json

:mod:`contender_embedded` with PostgreSQL instead of a SQLite file: as an application embeds it,
``embedded_engine(database_url=..., max_concurrent_tasks=2)`` runs on an event loop in a background thread
of the driver, and that engine both stores and runs the jobs. There is no worker process: the driver and
the engine are ONE process, so this is not the peers' split of a driver that enqueues and a worker that
runs (``geekblog_pg_client_1`` is that one); it is the deployment of an application that embeds the engine.

* storage: :mod:`contender_postgres`'s: a fresh database per ``reset()`` on ``$GEEKBLOG_PEER_PG`` (else
  ``postgresql://postgres@127.0.0.1:5432``), named after the driver's pid and the reset count, dropped
  ``WITH (FORCE)`` at the next reset and at ``close()``.
* ``start_worker()``: start the engine thread and return once ``embedded_engine`` has started (connected,
  schema ready, jobs of a dead engine recovered, the dispatcher running); ``stop_worker()``: leave the
  block (the engine stops) and join the thread.
* ``worker_pids()``: the driver's own pid, so "worker RSS" is the whole driver process: the harness,
  psutil and the engine together (what the embedding application pays). "Broker" RSS: PostgreSQL's
  postmaster, its auxiliary processes and this database's backends (``service_pids``, as the harness
  counts them for procrastinate and PgQueuer); W6 storage: ``pg_database_size``.
* W5 "cold start" = from that in-process engine start to the result in hand, as for
  ``geekblog_embedded``: the interpreter and the engine's imports are already warm, so unlike the peers'
  W5 it does NOT include starting a process (it does include connecting to PostgreSQL).

Calls, from the driver thread (not the engine's loop), as :mod:`contender_pg_client` makes them:

* submit: ``noop.delay(x)``, committed before it returns (the ``AsyncResult``);
* wait: ``AsyncResult.get(timeout)`` (an event the engine sets on the job's terminal event);
  ``wait_all`` (W1): ``ResultSet(handles).get()``;
* chain / chord: ``chain(...).apply_async()``, ``chord(...).apply_async()``, waited with ``get()``;
* no worker running (W5, W6 backlog): ``noop.delay(x)`` goes to the engine's storage opened WITHOUT a
  dispatcher (:class:`peer_support.StoreOnly` with ``bind=True``), and nothing claims the jobs until the
  engine starts.

Cost (``GEEKBLOG_PEER_COST_FILE``): :mod:`contender_postgres`'s accounting. The engine's process is the
driver's, so its "engines' CPU" and "driver CPU" are the same process's CPU (measured by psutil and by
``time.process_time()``), not two parts to add up.

Knobs: ``GEEKBLOG_PEER_LOOP`` and ``GEEKBLOG_PEER_TASKS`` as for :mod:`contender_embedded`;
``GEEKBLOG_PEER_CONCURRENCY`` (max_concurrent_tasks, 2 as the harness's "worker concurrency 2").
``GEEKBLOG_PEER_ENGINES`` does not apply (one engine, in this process).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
import contender_embedded
import contender_pg_client

from entrypoints.celery_compat import embedded_engine


class EngineThread(contender_embedded.EngineThread):
    """``embedded_engine(database_url=..., max_concurrent_tasks=...)`` on a loop in a driver thread."""

    def _engine(self) -> Any:
        return embedded_engine(database_url=self.db_path, max_concurrent_tasks=self.concurrency)


class Contender(contender_pg_client.Contender):
    """The client contender's calls, store-only submitter, storage and cost accounting, with the engine
    that runs the jobs in this process: ``client`` (the engine the Celery-style calls are bound to) and
    ``proc`` (the "worker") are the same :class:`EngineThread`."""

    name = "geekblog_pg_embedded"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.name = "geekblog_pg_embedded"
        self.engines = 1
        self.extra = "none"

    # --- "worker" lifecycle: the engine thread in this process -----------------------------------------
    def worker_cmd(self) -> list[str]:
        return [
            f"(in-process) embedded_engine(database_url=..., max_concurrent_tasks={self.concurrency})"
            " on an event loop in a driver thread"
        ]

    def start_worker(self) -> EngineThread:  # type: ignore[override]
        if self.database_url is None:
            self.reset()
        self._close_store()  # the Celery-style calls are bound to the engine from now on
        engine = EngineThread(str(self.database_url), self.concurrency)
        engine.start()
        self.client = self.proc = engine
        self._turn = self._waited = self._tasks = 0
        self._mark = None
        return engine

    def worker_pids(self, proc: Any) -> list[int]:
        return [os.getpid()]

    def stop_worker(self, proc: EngineThread, timeout: float = 20) -> None:  # type: ignore[override]
        cost = (self._cpu(), time.process_time()) if self._mark is not None and self._tasks else None
        try:
            proc.stop(timeout)
        finally:
            self.client = self.proc = None
        if cost is not None:
            self._record_cost(*cost)  # transactions counted after the engine stopped, as for the others
        self._mark = None

    def versions(self) -> dict[str, Any]:
        out = super().versions()
        out.update(
            python=platform.python_version(),  # the engine runs in the driver's interpreter
            engines=1,
            worker_cmd=self.worker_cmd()[0],
            max_concurrent_tasks=self.concurrency,
            loop=contender_embedded.LOOP,
            wait="AsyncResult.get() (threading.Event set by the engine); wait_all: ResultSet(handles).get()",
        )
        return out

    def close(self) -> None:
        if self.client is not None:
            self.client.stop()
            self.client = self.proc = None
        super().close()
