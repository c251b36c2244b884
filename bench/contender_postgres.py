"""GeekBlog Tasks on PostgreSQL, 1 to N engine processes on one database, for the shared peer benchmark.

    GEEKBLOG_PEER_ENGINES=2 python bench.py --contender /path/to/bench/contender_postgres.py --json out.json

The service contender (:mod:`contender_service`: ``POST /jobs``, server-sent events, ``POST /workflows``)
with PostgreSQL instead of a SQLite file:

* storage: a fresh database per ``reset()``, created on the machine's PostgreSQL
  (``$GEEKBLOG_PEER_PG``, else ``postgresql://postgres@127.0.0.1:5432``) and dropped ``WITH (FORCE)`` at
  the next reset and at ``close()``; every engine gets it as ``GEEKBLOG_DATABASE_URL``.
* engines: ``GEEKBLOG_PEER_ENGINES`` (1, 2, 3...) processes on that database, each with
  ``GEEKBLOG_MAX_CONCURRENT_TASKS=2`` (the harness's "worker concurrency 2", per process). The contender
  is named ``geekblog_pg_<N>``. Engine 1 is ``geekblog serve``; the others are more ``geekblog serve``
  replicas on other ports (``GEEKBLOG_PEER_EXTRA=serve``, the default), or ``geekblog worker`` processes
  (an engine without HTTP, ``GEEKBLOG_PEER_EXTRA=worker``).
* submissions: with replicas, round robin over their HTTP ports, as a load balancer in front of them
  would (an engine that hands a submission to itself runs it at once; what it cannot run waits in the
  shared queue, where any engine that frees a slot claims it). With workers, all go to engine 1, and
  the workers take part only as far as engines wake each other for new jobs (LISTEN/NOTIFY); without
  that, an idle worker never learns of them, which is why replicas are the default.
* waits: server-sent events on the engine the job was submitted to. With more than one engine a job may
  finish on another one, whose events this engine's stream does not carry (until engines share their
  events), so with N > 1 a stream silent for ``GEEKBLOG_PEER_RECHECK_S`` (0.25 s) is closed and the job
  read with ``GET``; a job still running gets a new stream.
* no worker running (W5, W6 backlog): the jobs are committed by ``JobService.submit`` with no dispatcher
  (:class:`peer_support.StoreOnly` on the database URL), as for the SQLite contenders.

Cost: with ``GEEKBLOG_PEER_COST_FILE`` set (``bench/compare.py`` sets it), the session with the most tasks
(W1's) leaves there its CPU per task (engine processes; PostgreSQL's postmaster, auxiliary processes and
this database's backends; the driver) and PostgreSQL transactions per task (``pg_stat_database``, reads
included), counted from the end of the harness's 10 warm-up round trips to the start of ``stop_worker``
(transactions: to after the engines stopped, when their backends have reported them).

Memory, as the harness counts it for procrastinate and PgQueuer: worker RSS = the engine processes;
"broker" RSS = PostgreSQL's postmaster, its auxiliary processes and the backends of this database.
W6 storage = ``pg_database_size`` (it includes the empty database's ~7.5 MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, NamedTuple

sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
import contender_service
import peer_support
import psutil
from contender_service import TERMINAL, Api, _outcome
from contenders.base import HERE, BaseContender

SERVER = os.environ.get("GEEKBLOG_PEER_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
WARMUP = 10  # the harness's warm-up round trips before each timed part (bench.py: Worker(warmup=10))


class Handle(NamedTuple):
    collection: str  # "jobs" or "workflows"
    id: str
    engine: int = 0  # the index of the engine it was submitted to


def _admin(*statements: str, query: str | None = None, args: tuple[Any, ...] = ()) -> list[Any]:
    """Run ``statements`` on the server's ``postgres`` database (autocommit), then ``query``'s rows."""
    import asyncpg

    async def run() -> list[Any]:
        connection = await asyncpg.connect(f"{SERVER}/postgres")
        try:
            for statement in statements:
                await connection.execute(statement)
            return list(await connection.fetch(query, *args)) if query else []
        finally:
            await connection.close()

    return asyncio.run(run())


def _extra_mode(exe: str) -> str:
    """``serve`` (the default) or ``worker``: what the engines after the first run as."""
    wanted = os.environ.get("GEEKBLOG_PEER_EXTRA", "serve")
    if wanted not in ("worker", "serve"):
        raise SystemExit(f"GEEKBLOG_PEER_EXTRA must be serve or worker, not {wanted!r}")
    if wanted == "worker":  # asked with the engines' own code on the path, as they will run
        env = {**os.environ, "PYTHONPATH": str(peer_support.REPO)}
        probe = subprocess.run([exe, "worker", "--help"], capture_output=True, timeout=60, check=False, env=env)
        if probe.returncode != 0:
            raise SystemExit(f"GEEKBLOG_PEER_EXTRA=worker: this checkout's CLI has no `geekblog worker` ({exe})")
    return wanted


class Contender(contender_service.Contender):
    name = "geekblog_pg_1"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.engines = int(os.environ.get("GEEKBLOG_PEER_ENGINES", "1"))
        if self.engines < 1:
            raise SystemExit("GEEKBLOG_PEER_ENGINES must be at least 1")
        self.name = f"geekblog_pg_{self.engines}"
        self.extra = _extra_mode(self.exe) if self.engines > 1 else "none"
        self.recheck = float(os.environ.get("GEEKBLOG_PEER_RECHECK_S", "0.25")) if self.engines > 1 else None
        self.database: str | None = None
        self.database_url: str | None = None
        self.others: list[subprocess.Popen[bytes]] = []
        self.apis: list[Api] = []
        self._turn = 0
        self.cost_file = os.environ.get("GEEKBLOG_PEER_COST_FILE")
        self._waited = self._tasks = 0
        self._mark: dict[str, Any] | None = None

    # --- storage ------------------------------------------------------------------------------------
    def _drop(self) -> None:
        if self.database is not None:
            _admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self.database = self.database_url = self.db_path = None

    def reset(self) -> None:
        self._close_store()
        self._drop()
        self._resets += 1
        self.database = f"geekblog_bench_{os.getpid()}_{self._resets}"
        _admin(f'CREATE DATABASE "{self.database}"')
        self.database_url = f"{SERVER}/{self.database}"
        self.db_path = self.database_url  # the service contender's "storage exists" mark

    def service_pids(self) -> list[int]:
        """The postmaster, its auxiliary processes and the backends of this database (as the harness's
        ``contenders/_pg.py`` counts them for procrastinate and PgQueuer)."""
        if self.database is None:
            return []
        rows = _admin(query="SELECT pid, backend_type, datname FROM pg_stat_activity WHERE pid <> pg_backend_pid()")
        pids = [pid for pid, kind, name in rows if name == self.database or (kind != "client backend" and name is None)]
        try:
            if pids:
                pids.insert(0, psutil.Process(pids[0]).parent().pid)
        except (psutil.NoSuchProcess, AttributeError):
            pass
        return pids

    def backlog_footprint(self) -> dict[str, Any]:
        if self.database is None:
            return {}
        (row,) = _admin(query="SELECT pg_database_size($1)", args=(self.database,))
        out: dict[str, Any] = {"pg_database_bytes": int(row[0])}

        async def queued() -> int:
            import asyncpg

            connection = await asyncpg.connect(str(self.database_url))
            try:
                return int(await connection.fetchval("SELECT count(*) FROM jobs WHERE state IN ('PENDING', 'RETRY')"))
            finally:
                await connection.close()

        try:
            out["queue_len"] = asyncio.run(queued())
        except Exception as exc:  # no schema yet (nothing was ever stored)
            out["queue_len_error"] = str(exc)
        return out

    # --- cost --------------------------------------------------------------------------------------------
    def _cpu(self) -> dict[str, dict[int, float]]:
        def seconds(pids: list[int]) -> dict[int, float]:
            found = {}
            for pid in pids:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = psutil.Process(pid).cpu_times()
                    found[pid] = times.user + times.system
            return found

        assert self.proc is not None
        return {"engines": seconds(self.worker_pids(self.proc)), "postgres": seconds(self.service_pids())}

    def _transactions(self) -> int:
        (row,) = _admin(
            query="SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1", args=(self.database,)
        )
        return int(row[0])

    def _take_mark(self) -> None:
        self._mark = {"cpu": self._cpu(), "driver": time.process_time(), "transactions": self._transactions()}

    def _record_cost(self, cpu: dict[str, dict[int, float]], driver: float) -> None:
        """Write this session's cost per task when it ran more tasks than the one recorded (W1 wins)."""
        mark, tasks = self._mark, self._tasks
        if mark is None or tasks == 0 or not self.cost_file:
            return
        try:
            with open(self.cost_file) as source:
                recorded = json.load(source)
        except (OSError, ValueError):
            recorded = {}
        if recorded.get("tasks", 0) >= tasks:
            return

        def used(group: str) -> float:
            return sum(max(now - mark["cpu"][group].get(pid, 0.0), 0.0) for pid, now in cpu[group].items())

        cost = {
            "tasks": tasks,
            "engines": self.engines,
            "engines_cpu_ms": round(1000 * used("engines") / tasks, 3),
            "postgres_cpu_ms": round(1000 * used("postgres") / tasks, 3),
            "driver_cpu_ms": round(1000 * (driver - mark["driver"]) / tasks, 3),
            "transactions": round((self._transactions() - mark["transactions"]) / tasks, 2),
        }
        with open(self.cost_file, "w") as sink:
            json.dump(cost, sink)

    # --- engines --------------------------------------------------------------------------------------
    def worker_env(self) -> dict[str, str]:
        env = super().worker_env()
        env.pop("GEEKBLOG_DB_PATH", None)
        env["GEEKBLOG_PERSISTENCE"] = "postgres"
        env["GEEKBLOG_DATABASE_URL"] = str(self.database_url)
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        if self.database_url is None:
            self.reset()
        proc = super().start_worker()  # engine 1: geekblog serve (closes the store-only submitter first)
        assert self.api is not None
        self.apis = [self.api]
        self.others = []
        for number in range(2, self.engines + 1):
            if self.extra == "worker":
                command = [self.exe, "worker"]
            else:
                port = peer_support.free_port()
                command = [self.exe, "serve", "--host", "127.0.0.1", "--port", str(port)]
            other = self._start_engine(number, command)
            if self.extra != "worker":
                self.apis.append(Api(port, alive=lambda other=other: other.poll() is None))  # type: ignore[misc]
        self._turn = self._waited = self._tasks = 0
        self._mark = None
        return proc

    def _start_engine(self, number: int, command: list[str]) -> subprocess.Popen[bytes]:
        """Engine ``number`` (2, 3...) running ``command``, its output in its own log; one of :attr:`others`."""
        log = open(os.path.join(self.logdir, f"{self.name}-engine{number}-{self._nstarts}.log"), "wb")  # noqa: SIM115
        other = subprocess.Popen(
            command,
            cwd=HERE,
            env=self.worker_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        other._peers_log = log  # type: ignore[attr-defined]  # closed by stop_worker
        self.others.append(other)
        return other

    def worker_pids(self, proc: subprocess.Popen[bytes]) -> list[int]:
        pids = list(super().worker_pids(proc))
        for other in self.others:
            pids += super().worker_pids(other)
        return pids

    def stop_worker(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
        cost = (self._cpu(), time.process_time()) if self._mark is not None and self._tasks else None
        for api in self.apis[1:]:
            api.close()
        self.apis = self.apis[:1]
        others, self.others = self.others, []
        trees = [BaseContender.worker_pids(self, other) for other in others]
        for other in others:
            other.send_signal(self.stop_signal)  # every engine stops at once
        super().stop_worker(proc, timeout)  # engine 1, as the base contender stops a worker
        for other, tree in zip(others, trees, strict=True):
            with contextlib.suppress(subprocess.TimeoutExpired):
                other.wait(timeout)
            for pid in tree:  # anything of ours left: killed by PID, as the harness does
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                other.wait(5)
            other._peers_log.close()  # type: ignore[attr-defined]
        self.apis = []
        if cost is not None:
            self._record_cost(*cost)
        self._mark = None

    # --- tasks ------------------------------------------------------------------------------------------
    def submit(self, x: Any) -> Handle:
        if self.proc is None:  # no engine running: commit straight into the database
            if self.database_url is None:
                self.reset()
            if self.store is None:
                self.store = peer_support.StoreOnly(database_url=str(self.database_url))
            return Handle("jobs", self.store.submit(self.prefix + "noop", [x]))
        engine = self._turn % len(self.apis)
        self._turn += 1
        if self._mark is not None:
            self._tasks += 1
        job = self.apis[engine].json("POST", "/jobs", {"task": self.prefix + "noop", "args": [x]}, 60.0, 202)
        return Handle("jobs", job["id"], engine)

    def _until_terminal(self, handle: Any, timeout: float) -> dict[str, Any]:
        engine = getattr(handle, "engine", 0)
        api = self.apis[engine] if engine < len(self.apis) else self._api()
        path = f"/{handle.collection}/{handle.id}"
        if self.recheck is None:
            return api.until_terminal(path + "/events", handle.id, timeout)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{path} not finished after {timeout} s")
            try:
                return api.until_terminal(path + "/events", handle.id, min(self.recheck, remaining))
            except TimeoutError:
                api.close()  # the stream was cut mid-way: its connection cannot be reused
            document = api.json("GET", path, None, max(deadline - time.monotonic(), 0.1), 200)
            if document["state"] in TERMINAL:
                return dict(document)

    def wait(self, handle: Any, timeout: float) -> Any:
        value = _outcome(self._until_terminal(handle, timeout))
        self._waited += 1
        if self._waited == WARMUP and self._mark is None and self.proc is not None:
            self._take_mark()  # the warm-up is over: what follows is the timed part
        return value

    def wait_all(self, handles: list[Any], timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        values = []
        for handle in handles:
            remaining = max(deadline - time.monotonic(), 0.1)
            api = self.apis[getattr(handle, "engine", 0)]
            document = api.json("GET", f"/{handle.collection}/{handle.id}", None, remaining, 200)
            if document["state"] not in TERMINAL:
                document = self._until_terminal(handle, remaining)
            values.append(_outcome(document))
        return values

    def versions(self) -> dict[str, Any]:
        out = super().versions()
        out.pop("sqlite", None)
        (row,) = _admin(
            query="SELECT current_setting('server_version'), current_setting('synchronous_commit'),"
            " current_setting('fsync'), current_setting('shared_buffers')"
        )
        out.update(
            postgres=row[0],
            pg_settings=f"synchronous_commit {row[1]}, fsync {row[2]}, shared_buffers {row[3]}",
            engines=self.engines,
            worker_cmd="geekblog serve"
            + {
                "none": "",
                "worker": f" + {self.engines - 1} x geekblog worker",
                "serve": f" + {self.engines - 1} x geekblog serve (submissions round robin)",
            }[self.extra],
        )
        if self.recheck is not None:
            out["wait"] += f", GET after {self.recheck:g} s of silence"
        return out

    def close(self) -> None:
        self._close_store()
        for api in self.apis:
            api.close()
        self._drop()
        shutil.rmtree(self.scratch, ignore_errors=True)
