"""GeekBlog Tasks as a service, for the shared peer benchmark (``../shared/peers``).

    python bench.py --contender /path/to/main/bench/contender_service.py --json out.json

Worker: one ``geekblog serve`` process (Litestar on uvicorn, engine and SQLite in the same process)
from the project's venv (``$GEEKBLOG_VENV``, else ``<repo>/.venv``), on a fresh SQLite file per
``reset()`` in a temporary directory, with ``GEEKBLOG_TASK_MODULES=bench.peer_tasks``.

Driver (this process):

* submit: ``POST /jobs`` on ONE persistent ``http.client`` keep-alive connection (measured faster
  than a persistent ``httpx.Client``: about 650 vs 480 submits/s here); the handle is the job id
  from the ``202``, returned only once the job is committed.
* wait: ``GET /jobs/{id}/events`` (server-sent events): the server sends the current state first and
  the terminal state as soon as it is committed, then closes the stream: a push, no polling.
  ``wait_all`` (W1) first asks ``GET /jobs/{id}`` (a finished job costs one cheap request) and
  falls back to the event stream for a job not finished yet.
* chain / chord: one ``POST /workflows`` with ``{"chain": [...]}`` / ``{"chord": {"header", "body"}}``;
  waited on with ``GET /workflows/{id}/events`` (its terminal event carries the result).
* no worker running (W5 cold start, W6 backlog): the service is the only HTTP endpoint, so the jobs
  are committed straight into the SQLite file by ``JobService.submit`` with no dispatcher
  (:class:`peer_support.StoreOnly`), and picked up when the service starts. W6's enqueue rate is
  therefore the store's, without HTTP.

Memory: worker RSS = the ``geekblog serve`` process (no broker: ``service_pids()`` is empty).
Knobs: ``GEEKBLOG_PEER_TASKS=sync|async`` (plain ``def`` tasks in the engine's thread pool, the
default, or ``async def`` on its loop), ``GEEKBLOG_PEER_CONCURRENCY`` (max_concurrent_tasks, 2 as
the harness's "worker concurrency 2"), ``GEEKBLOG_PEER_WAIT=sse|get-then-sse``.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, NamedTuple

from contenders.base import BaseContender

sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))
import peer_support

TERMINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
KEEPALIVE_IDLE_S = 4.0  # uvicorn closes idle keep-alive connections after 5 s


class Handle(NamedTuple):
    collection: str  # "jobs" or "workflows"
    id: str


class ServiceError(RuntimeError):
    """The service answered something unexpected, or is not running."""


def _venv() -> str:
    return os.environ.get("GEEKBLOG_VENV") or str(peer_support.REPO / ".venv")


class Api:
    """JSON over one keep-alive HTTP/1.1 connection to 127.0.0.1:port (reconnects when needed)."""

    def __init__(self, port: int, alive: Any) -> None:
        self.port = port
        self._alive = alive  # () -> bool: whether the service process still runs
        self._conn: http.client.HTTPConnection | None = None
        self._used = 0.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self, deadline: float) -> http.client.HTTPConnection:
        if self._conn is not None and time.monotonic() - self._used > KEEPALIVE_IDLE_S:
            self.close()
        while self._conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=max(deadline - time.monotonic(), 0.1))
            try:
                conn.connect()
            except ConnectionRefusedError:
                # The service is still starting (W5 and the warm-up right after a start): retry soon.
                if not self._alive():
                    raise ServiceError("the geekblog service exited (see its log in /tmp/peers-logs)") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the service on port {self.port} did not accept connections") from None
                time.sleep(0.002)
                continue
            self._conn = conn
        return self._conn

    def request(self, method: str, path: str, body: bytes | None, timeout: float) -> http.client.HTTPResponse:
        """Send one request; returns the response with its body NOT read (the caller reads it all)."""
        deadline = time.monotonic() + timeout
        for attempt in (1, 2):
            reused = self._conn is not None and time.monotonic() - self._used <= KEEPALIVE_IDLE_S
            conn = self._connection(deadline)
            if conn.sock is None:  # http.client closed it after a `Connection: close` answer
                conn.connect()
            assert conn.sock is not None
            conn.sock.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                if body is None:
                    conn.request(method, path)
                else:
                    conn.request(method, path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A reused keep-alive connection the server had closed before reading the request:
                # resent once on a fresh connection (a fresh one failing is an error).
                self.close()
                if attempt == 2 or not reused:
                    raise
                continue
            self._used = time.monotonic()
            return response
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any, timeout: float, expect: int) -> Any:
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        response = self.request(method, path, payload, timeout)
        data = response.read()
        if response.status != expect:
            raise ServiceError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def until_terminal(self, path: str, ident: str, timeout: float) -> dict[str, Any]:
        """Read the event stream at ``path`` until ``ident`` reaches a terminal state; returns that event."""
        response = self.request("GET", path, None, timeout)
        if response.status != 200:
            raise ServiceError(f"GET {path}: {response.status} {response.read()[:300]!r}")
        final = None
        while True:
            line = response.readline()
            if not line:  # the server closes the stream after the terminal state
                break
            if line.startswith(b"data:"):
                event = json.loads(line[5:])
                if event.get("id") == ident and event.get("state") in TERMINAL and not event.get("progress"):
                    final = event
        self._used = time.monotonic()
        if final is None:
            raise ServiceError(f"{path}: the stream ended without a terminal state")
        return final


def _outcome(document: dict[str, Any]) -> Any:
    if document["state"] == "SUCCESS":
        return document.get("result")
    raise ServiceError(f"{document['id']} ended {document['state']}: {document.get('error')}")


class Contender(peer_support.FreshDatabase, BaseContender):
    name = "geekblog_service"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.venv = _venv()
        self.exe = os.path.join(self.venv, "bin", "geekblog")
        if not os.access(self.exe, os.X_OK):
            raise SystemExit(f"{self.exe} not found: run `make install` in {peer_support.REPO} or set GEEKBLOG_VENV")
        self.prefix = peer_support.peer_tasks().task_prefix()
        self.concurrency = int(os.environ.get("GEEKBLOG_PEER_CONCURRENCY", "2"))
        self.wait_mode = os.environ.get("GEEKBLOG_PEER_WAIT", "get-then-sse")
        if self.wait_mode not in ("sse", "get-then-sse"):
            raise SystemExit(f"GEEKBLOG_PEER_WAIT must be sse or get-then-sse, not {self.wait_mode!r}")
        self.scratch = tempfile.mkdtemp(prefix="peers-geekblog-service-")
        self.db_path: str | None = None
        self._resets = 0
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.api: Api | None = None
        self.store: peer_support.StoreOnly | None = None

    # --- worker lifecycle -------------------------------------------------------------------------
    def worker_cmd(self) -> list[str]:
        return [self.exe, "serve", "--host", "127.0.0.1", "--port", str(self.port or "<free port>")]

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Only the repository on the path: the harness folder has a `bench.py` that would shadow `bench/`.
        env["PYTHONPATH"] = str(peer_support.REPO)
        env.pop("VIRTUAL_ENV", None)
        env.pop("GEEKBLOG_API_TOKEN", None)
        env.update(
            GEEKBLOG_DB_PATH=str(self.db_path),
            GEEKBLOG_PERSISTENCE="sqlite",
            GEEKBLOG_TASK_MODULES="bench.peer_tasks",
            GEEKBLOG_MAX_CONCURRENT_TASKS=str(self.concurrency),
            GEEKBLOG_MODE="production",
            GEEKBLOG_PEER_TASKS="async" if self.prefix == peer_support.peer_tasks().ASYNC_PREFIX else "sync",
        )
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        if self.db_path is None:
            self.reset()
        self._close_store()  # the service takes the database's lock
        self.port = peer_support.free_port()
        proc: subprocess.Popen[bytes] = super().start_worker()
        self.proc = proc
        self.api = Api(self.port, alive=lambda: proc.poll() is None)
        return proc

    def stop_worker(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
        if self.api is not None:
            self.api.close()
            self.api = None
        super().stop_worker(proc, timeout)
        self.proc = None

    # --- storage / tasks: reset() comes from peer_support.FreshDatabase ------------------------

    def _api(self) -> Api:
        if self.api is None:
            raise ServiceError("the service is not running")
        return self.api

    def submit(self, x: Any) -> Handle:
        if self.proc is None:  # no worker: commit straight into the file (see the module docstring)
            if self.db_path is None:
                self.reset()
            if self.store is None:
                self.store = peer_support.StoreOnly(str(self.db_path))
            return Handle("jobs", self.store.submit(self.prefix + "noop", [x]))
        job = self._api().json("POST", "/jobs", {"task": self.prefix + "noop", "args": [x]}, 60.0, 202)
        return Handle("jobs", job["id"])

    def wait(self, handle: Handle, timeout: float) -> Any:
        api = self._api()
        return _outcome(api.until_terminal(f"/{handle.collection}/{handle.id}/events", handle.id, timeout))

    def wait_all(self, handles: list[Handle], timeout: float) -> list[Any]:
        if self.wait_mode == "sse":
            return super().wait_all(handles, timeout)
        api = self._api()
        deadline = time.monotonic() + timeout
        values = []
        for handle in handles:
            remaining = max(deadline - time.monotonic(), 0.1)
            document = api.json("GET", f"/{handle.collection}/{handle.id}", None, remaining, 200)
            if document["state"] not in TERMINAL:
                document = api.until_terminal(f"/{handle.collection}/{handle.id}/events", handle.id, remaining)
            values.append(_outcome(document))
        return values

    def chain(self, n: int, start: int) -> Handle:
        steps = [{"task": self.prefix + "add1", "args": [start]}] + [{"task": self.prefix + "add1"}] * (n - 1)
        workflow = self._api().json("POST", "/workflows", {"canvas": {"chain": steps}}, 60.0, 202)
        return Handle("workflows", workflow["id"])

    def chord(self, n: int) -> Handle:
        header = [{"task": self.prefix + "noop", "args": [i]} for i in range(n)]
        canvas = {"chord": {"header": header, "body": {"task": self.prefix + "total"}}}
        workflow = self._api().json("POST", "/workflows", {"canvas": canvas}, 60.0, 202)
        return Handle("workflows", workflow["id"])

    def backlog_footprint(self) -> dict[str, Any]:
        return peer_support.sqlite_footprint(self.db_path)

    def versions(self) -> dict[str, Any]:
        python = os.path.join(self.venv, "bin", "python")
        probe = subprocess.run(
            [python, "-c", "import platform, sqlite3; print(sqlite3.sqlite_version, platform.python_version())"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        sqlite_version, _, python_version = probe.stdout.strip().partition(" ")
        local = peer_support.local_versions()
        return {
            "geekblog-tasks": local["geekblog-tasks"],
            "commit": local["commit"],
            "sqlite": sqlite_version or "?",
            "python": python_version or "?",
            "worker_cmd": "geekblog serve --host 127.0.0.1 --port <free port>",
            "max_concurrent_tasks": self.concurrency,
            "tasks": f"{self.prefix}noop/add1/total ({'async def' if 'async' in self.prefix else 'def'})",
            "client": f"http.client keep-alive (driver python {local['python']})",
            "wait": "GET then SSE" if self.wait_mode == "get-then-sse" else "SSE",
        }

    def close(self) -> None:
        self._close_store()
        if self.api is not None:
            self.api.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
