"""Crash-loop harness: a mixed load against the real service, SIGKILLed at random instants, then invariants.

    python -m tests.reliability.crash_loop --kills 25 --seconds 300 --seed 1 [--keep DIR]
        [--database-url postgresql://... [--lease-seconds 3]]

It starts ``geekblog serve`` on a fresh SQLite file, or on the PostgreSQL database ``--database-url``
names (which must be empty; its leases last ``--lease-seconds``, since there a restarted service takes the
killed one's jobs only once their leases expire), with tasks from ``tests/reliability/load_tasks.py``, drives
single jobs (some with a countdown), retried jobs, cancellations, nested workflows and article pipelines
at it over HTTP from a few threads, SIGKILLs it at random (seeded) instants and starts it again on the
same file, again and again. Every acknowledged submission (a 2xx with an id) is appended, with what it
must end with, to ``manifest.jsonl`` (fsynced); every task execution appends ``<job id> <attempt>`` to
``runs.log``; right after each kill the database is read (read-only) into ``snapshots/kill-NN.json.gz``.
At the end the load stops, the service is started once more, every acknowledged job, workflow and
project is waited for (bounded), read over HTTP and straight from the SQLite file, and checked:

(a) each reached one terminal state, the expected one with the expected result, and every submission
    acknowledged before a kill was in the database right after it;
(b) no terminal row committed before a kill changed afterwards (jobs, workflows, finished projects);
(c) each workflow's result is what the same canvas gives without crashes (computed here), and no
    workflow step became two jobs;
(d) no job ran more often than its attempts allow, no attempt ran twice, and a job whose terminal
    state was committed before a kill never ran again after it;
(e) article projects ended FINISHED with one ``## `` heading per planned section.

Prints a summary and exits 1 if an invariant failed (the run directory is then kept).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import heapq
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support.postgres import fetch_blocking

ROOT = Path(__file__).resolve().parents[2]
TASK_MODULE = "tests.reliability.load_tasks"
RUNS_LOG_ENV = "GEEKBLOG_RELIABILITY_RUNS_LOG"  # read by load_tasks.py
TERMINAL = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
PROJECT_DONE = frozenset({"FINISHED", "FAILED"})
NO_INPUT: Any = object()


# --- configuration ---------------------------------------------------------------------------------------


@dataclass
class Config:
    """One run. ``seconds`` is the planned length of the load phase: kills are spread over it."""

    kills: int = 25
    seconds: float = 300.0
    seed: int = 1
    run_dir: Path | None = None
    """Where the database, logs, manifest and snapshots go (a temporary directory when None)."""
    keep: bool = False
    """Keep ``run_dir`` even when every invariant holds (it is always kept on a failure)."""
    submitters: int = 2
    pace: tuple[float, float] = (0.03, 0.12)
    """Seconds each submitter waits between two submissions (uniform)."""
    weights: dict[str, float] = field(
        default_factory=lambda: {"job": 50, "retry": 10, "cancel": 8, "workflow": 20, "project": 4}
    )
    early_kill_chance: float = 0.15
    """Chance that a kill lands within 0.3 s of the service being ready (recovered jobs just restarted)."""
    startup_kill_chance: float = 0.1
    """Chance that a restart is killed before it is ready (imports, migrations, recovery)."""
    inflight_kill_chance: float = 0.25
    """Chance that, once its timer ran out, a kill waits for a submission to be on the wire (0-4 ms after)."""
    offline_delay: float = 0.05
    ready_timeout: float = 60.0
    request_timeout: float = 10.0
    final_timeout: float = 180.0
    """Bound on the wait, after the last restart, for everything acknowledged to finish."""
    log: Callable[[str], None] | None = None
    """Progress lines (e.g. ``print``); None for silence."""
    database_url: str | None = None
    """A PostgreSQL database to run on (empty) instead of a SQLite file in ``run_dir``."""
    lease_seconds: float = 3.0
    """``GEEKBLOG_LEASE_SECONDS`` on PostgreSQL: how long after a kill its jobs can be recovered."""

    @classmethod
    def quick(cls, **changes: Any) -> Config:
        """The mode ``make test`` runs: 5 kills, a smaller load, about 40 s in all."""
        settings: dict[str, Any] = {"kills": 5, "seconds": 22.0, "final_timeout": 120.0, "startup_kill_chance": 0.0}
        settings.update(changes)
        return cls(**settings)


# --- what each task returns (independent of the service's code) -----------------------------------------


def digest_of(text: str, rounds: int) -> str:
    value = text.encode()
    for _ in range(rounds):
        value = hashlib.sha256(value).hexdigest().encode()
    return value.decode()[:16]


PURE: dict[str, Callable[..., Any]] = {
    "rl.add": lambda x, y, delay=0.0: x + y,
    "rl.add_sync": lambda x, y, delay=0.0: x + y,
    "rl.mul": lambda x, y: x * y,
    "rl.tsum": lambda values, delay=0.0: sum(values),
    "rl.digest": lambda text, rounds, delay=0.0: digest_of(text, rounds),
    "rl.flaky": lambda x, fails, delay=0.0: 3 * x + 1,
    "rl.sleepy": lambda x, seconds: x,
    "rl.fanout": lambda n: [2 * i for i in range(n)],
}


def evaluate(canvas: dict[str, Any], given: Any = NO_INPUT) -> Any:
    """What a canvas (its HTTP form) returns without crashes, by Celery's rules: a parent's result is
    prepended to a mutable signature's args; a group returns its members' results in order; a chord's
    body receives its header's results; a chain's result is its last step's."""
    if "task" in canvas:
        args = list(canvas.get("args", []))
        if not canvas.get("immutable") and given is not NO_INPUT:
            args = [given, *args]
        return PURE[canvas["task"]](*args, **canvas.get("kwargs", {}))
    if "chain" in canvas:
        value = given
        for step in canvas["chain"]:
            value = evaluate(step, value)
        return value
    if "group" in canvas:
        return [evaluate(member, given) for member in canvas["group"]]
    chord = canvas["chord"]
    return evaluate(chord["body"], [evaluate(member, given) for member in chord["header"]])


def sig(task: str, *args: Any, immutable: bool = False, **kwargs: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"task": task, "args": list(args)}
    if kwargs:
        node["kwargs"] = kwargs
    if immutable:
        node["immutable"] = True
    return node


# --- files: manifest, runs log, database snapshots -------------------------------------------------------


class Manifest:
    """Append-only JSON lines, each written with one ``os.write`` and fsynced before the writer goes on."""

    def __init__(self, path: Path, t0: float) -> None:
        self.path = path
        self._t0 = t0
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def now(self) -> float:
        return round(time.monotonic() - self._t0, 4)

    def append(self, record: dict[str, Any]) -> None:
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
            os.fsync(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def read_manifest(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines(keepends=True)
    return [json.loads(line) for line in lines if line.endswith("\n")]


def read_runs(path: Path) -> list[tuple[str, int]]:
    """Every task execution in order: (job id, attempt)."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        ident, attempt = line.split()
        runs.append((ident, int(attempt)))
    return runs


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@dataclass
class DbState:
    """Every job, workflow and project row, as stored (JSON columns left as text)."""

    jobs: dict[str, dict[str, Any]]
    workflows: dict[str, dict[str, Any]]
    projects: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"jobs": self.jobs, "workflows": self.workflows, "projects": self.projects}

    def record(self, ident: str) -> dict[str, Any] | None:
        return self.jobs.get(ident) or self.workflows.get(ident)


JOB_COLUMNS = "id, task, args, state, result, error, attempts, max_retries, workflow_id, node, waiting_on"
WORKFLOW_COLUMNS = "id, state, result, error, parent_job_id"
PROJECT_COLUMNS = "id, status, plan, finished, workflow_id, error, sections_wanted"


def read_db(db_path: Path, database_url: str | None = None) -> DbState | None:
    """The database as committed, through a read-only connection (PostgreSQL's at ``database_url`` if
    given, else the SQLite file); None before its schema exists."""
    if database_url is not None:
        return read_postgres(database_url)
    if not db_path.exists():
        return None
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)
    connection.row_factory = sqlite3.Row
    try:
        try:
            jobs = {row["id"]: dict(row) for row in connection.execute(f"SELECT {JOB_COLUMNS} FROM jobs")}
            workflows = {
                row["id"]: dict(row) for row in connection.execute(f"SELECT {WORKFLOW_COLUMNS} FROM workflows")
            }
            projects = {row["id"]: dict(row) for row in connection.execute(f"SELECT {PROJECT_COLUMNS} FROM projects")}
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None
            raise
    finally:
        connection.close()
    return DbState(jobs=jobs, workflows=workflows, projects=projects)


def read_postgres(url: str) -> DbState | None:
    try:
        jobs = {row["id"]: dict(row) for row in fetch_blocking(url, f"SELECT {JOB_COLUMNS} FROM jobs")}
        workflows = {row["id"]: dict(row) for row in fetch_blocking(url, f"SELECT {WORKFLOW_COLUMNS} FROM workflows")}
        projects = {row["id"]: dict(row) for row in fetch_blocking(url, f"SELECT {PROJECT_COLUMNS} FROM projects")}
    except asyncpg.UndefinedTableError:
        return None
    return DbState(jobs=jobs, workflows=workflows, projects=projects)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def terminal_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """What must never change once committed: ``id, state, result, error``."""
    return (row["id"], row["state"], row["result"], row["error"])


def headings(markdown: str) -> list[str]:
    return [line[3:].strip() for line in markdown.splitlines() if line.startswith("## ")]


# --- the service process ---------------------------------------------------------------------------------


class ServiceDied(RuntimeError):
    """The service exited on its own (not by our signal)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def code_version() -> str:
    """The commit the service runs, and whether the working tree differs from it (others edit it meanwhile)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [name for name in dirty if "/" in name or name.endswith(".py")]
    return f"{head or 'unknown'}" + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")


def service_command() -> list[str]:
    script = Path(sys.executable).with_name("geekblog")
    if script.exists():
        return [str(script), "serve"]
    return [sys.executable, "-m", "entrypoints.cli", "serve"]


class ServiceProcess:
    """``geekblog serve`` on the harness's database; each start is a new generation with its own log."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.env = env
        self.generation = 0
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.startup_times: list[float] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.run_dir / f"service-{self.generation:02d}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        assert not self.alive, "a service process is still running"
        self.generation += 1
        self.port = free_port()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*service_command(), "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.spawned_at = time.monotonic()

    def wait_ready(self, until: float) -> bool:
        """Poll ``/ready`` until it answers 200 (True) or ``until`` passes (False)."""
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise ServiceDied(
                    f"service generation {self.generation} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/ready", timeout=1.0).status_code == 200:
                    self.startup_times.append(time.monotonic() - self.spawned_at)
                    return True
            except httpx.HTTPError:
                pass
            if time.monotonic() >= until:
                return False
            time.sleep(min(0.05, max(until - time.monotonic(), 0.0)))

    def typical_startup(self) -> float:
        return sorted(self.startup_times)[len(self.startup_times) // 2] if self.startup_times else 2.0

    def sigkill(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.process.wait(timeout=30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait (SIGKILL if it does not stop within ``timeout``); the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Link:
    """Where the service answers now; submitters wait on ``up`` while it is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._url: str | None = None
        self._generation = 0
        self.up = threading.Event()

    def publish(self, url: str, generation: int) -> None:
        with self._lock:
            self._url, self._generation = url, generation
        self.up.set()

    def down(self) -> None:
        self.up.clear()
        with self._lock:
            self._url = None

    def current(self) -> tuple[str | None, int]:
        with self._lock:
            return self._url, self._generation


class Unavailable(Exception):
    """The request got no answer (service down, killed mid-request, or too slow): not acknowledged."""


class Refused(Exception):
    """The service answered with an unexpected status (recorded as an anomaly): not acknowledged."""


# --- the load --------------------------------------------------------------------------------------------


class Load:
    """State shared by the load threads: where to send, the manifest, and what went wrong."""

    def __init__(self, config: Config, link: Link, manifest: Manifest) -> None:
        self.config = config
        self.link = link
        self.manifest = manifest
        self.stop = threading.Event()
        self.sending = threading.Event()
        """Set just before a submission is sent (an "inflight" kill waits for it)."""
        self.anomalies: list[str] = []
        self.refusals: list[str] = []
        """503 answers: the service may refuse work (storage locked or full); only losing it is a failure."""
        self.unavailable = 0
        self._lock = threading.Lock()
        self.canceller = Canceller(self)

    def anomaly(self, message: str) -> None:
        with self._lock:
            self.anomalies.append(message)

    def refused(self, message: str) -> None:
        with self._lock:
            self.refusals.append(message)

    def count_unavailable(self) -> None:
        with self._lock:
            self.unavailable += 1

    def post(self, client: httpx.Client, path: str, body: Any = None) -> tuple[httpx.Response, int]:
        url, generation = self.link.current()
        if url is None:
            raise Unavailable("the service is down")
        self.sending.set()
        try:
            response = client.post(url + path, json=body)
        except httpx.TransportError as exc:
            raise Unavailable(f"{type(exc).__name__}: {exc}") from None
        return response, generation

    def ack(self, kind: str, ident: str, generation: int, **info: Any) -> None:
        self.manifest.append(
            {"type": "ack", "kind": kind, "id": ident, "t": self.manifest.now(), "gen": generation, **info}
        )


class Submitter(threading.Thread):
    """Submits a random mix (seeded) until the load stops; a submission without an answer is dropped."""

    def __init__(self, load: Load, index: int) -> None:
        super().__init__(name=f"submitter-{index}", daemon=True)
        self.load = load
        self.rng = random.Random(f"{load.config.seed}-submitter-{index}")
        self.index = index
        self.serial = itertools.count()
        self.kinds = list(load.config.weights)
        self.weights = [load.config.weights[kind] for kind in self.kinds]

    def run(self) -> None:
        load = self.load
        with httpx.Client(timeout=load.config.request_timeout) as client:
            while not load.stop.is_set():
                if not load.link.up.wait(0.2):
                    continue
                kind = self.rng.choices(self.kinds, self.weights)[0]
                try:
                    getattr(self, f"submit_{kind}")(client)
                except Unavailable:
                    load.count_unavailable()
                except Refused:
                    pass
                except Exception as exc:
                    load.anomaly(f"{self.name}: {kind}: {type(exc).__name__}: {exc}")
                load.stop.wait(self.rng.uniform(*load.config.pace))

    def _accepted(self, response: httpx.Response, status: int, what: str) -> dict[str, Any] | None:
        if response.status_code == status:
            body: dict[str, Any] = response.json()
            return body
        message = f"{self.name}: {what}: HTTP {response.status_code}: {response.text[:300]}"
        if response.status_code == 503:
            self.load.refused(message)
        else:
            self.load.anomaly(message)
        return None

    def _job(self, client: httpx.Client, kind: str, body: dict[str, Any], expect: dict[str, Any], **info: Any) -> str:
        response, generation = self.load.post(client, "/jobs", body)
        accepted = self._accepted(response, 202, f"POST /jobs {body['task']}")
        if accepted is None:
            raise Refused()
        self.load.ack(kind, accepted["id"], generation, task=body["task"], body=body, expect=expect, **info)
        return str(accepted["id"])

    def submit_job(self, client: httpx.Client) -> None:
        rng = self.rng
        n = next(self.serial)
        task = rng.choice(["rl.add", "rl.add", "rl.add_sync", "rl.mul", "rl.digest", "rl.fanout"])
        delay = rng.choice([0.0, 0.0, round(rng.uniform(0.01, 0.2), 3)])
        kwargs: dict[str, Any] = {}
        if task in ("rl.add", "rl.add_sync"):
            args: list[Any] = [rng.randint(-1000, 1000), rng.randint(0, 10**6)]
            kwargs = {"delay": delay} if delay else {}
        elif task == "rl.mul":
            args = [rng.randint(-99, 99), rng.randint(0, 999)]
        elif task == "rl.digest":
            args = [f"{self.name}-{n}", rng.randint(1, 50)]
            kwargs = {"delay": delay} if delay else {}
        else:
            args = [rng.randint(1, 6)]
        options: dict[str, Any] = {}
        if rng.random() < 0.3:
            options["countdown"] = round(rng.uniform(0.1, 2.0), 3)
        body = {"task": task, "args": args, "kwargs": kwargs, "options": options}
        self._job(client, "job", body, {"state": "SUCCESS", "result": PURE[task](*args, **kwargs)})

    def submit_retry(self, client: httpx.Client) -> None:
        rng = self.rng
        x, fails = rng.randint(0, 10**4), rng.randint(1, 3)
        kwargs = {"delay": round(rng.uniform(0.01, 0.1), 3)} if rng.random() < 0.5 else {}
        body = {"task": "rl.flaky", "args": [x, fails], "kwargs": kwargs, "options": {}}
        expect = {"state": "SUCCESS", "result": PURE["rl.flaky"](x, fails), "min_attempts": fails + 1}
        self._job(client, "retry", body, expect)

    def submit_cancel(self, client: httpx.Client) -> None:
        rng = self.rng
        x = rng.randint(0, 10**4)
        # Cancelled while it runs, while it waits for its countdown, or (409) after it finished.
        if rng.random() < 0.5:
            body: dict[str, Any] = {"task": "rl.sleepy", "args": [x, round(rng.uniform(0.5, 4.0), 2)], "options": {}}
            result = x
        else:
            body = {"task": "rl.add", "args": [x, 1], "options": {"countdown": round(rng.uniform(0.5, 3.0), 2)}}
            result = x + 1
        ident = self._job(client, "cancel", body, {"state": "SUCCESS", "result": result})
        self.load.canceller.schedule(ident, rng.uniform(0.05, 3.0))

    def submit_workflow(self, client: httpx.Client) -> None:
        rng = self.rng
        shape = rng.choice(["chain_of_chords", "group_of_chains", "chain_group_task", "deep", "replace_in_chain"])
        d = round(rng.uniform(0.01, 0.08), 3)
        if shape == "chain_of_chords":
            k, m = rng.randint(2, 6), rng.randint(2, 4)
            canvas: dict[str, Any] = {
                "chain": [
                    {"chord": {"header": [sig("rl.add", i, i, delay=d) for i in range(k)], "body": sig("rl.tsum")}},
                    {"chord": {"header": [sig("rl.add_sync", j) for j in range(1, m + 1)], "body": sig("rl.tsum")}},
                    sig("rl.mul", 2),
                ]
            }
        elif shape == "group_of_chains":
            canvas = {
                "group": [
                    {"chain": [sig("rl.add", i, 1, delay=d), sig("rl.add_sync", 10), sig("rl.mul", 2)]}
                    for i in range(rng.randint(2, 5))
                ]
            }
        elif shape == "chain_group_task":
            a, b = rng.randint(0, 100), rng.randint(0, 100)
            canvas = {
                "chain": [
                    sig("rl.add", a, b, delay=d),
                    {"group": [sig("rl.add", 10), sig("rl.add_sync", 20), sig("rl.flaky", 1)]},
                    sig("rl.tsum"),
                ]
            }
        elif shape == "deep":
            canvas = {
                "chain": [
                    {
                        "group": [
                            {
                                "chain": [
                                    sig("rl.add", i, i, delay=d),
                                    {"chord": {"header": [sig("rl.add", 1), sig("rl.add", 2)], "body": sig("rl.tsum")}},
                                ]
                            }
                            for i in range(rng.randint(2, 4))
                        ]
                    },
                    sig("rl.tsum", delay=d),
                ]
            }
        else:
            canvas = {"chain": [sig("rl.fanout", rng.randint(2, 6)), sig("rl.tsum")]}
        response, generation = self.load.post(client, "/workflows", {"canvas": canvas})
        accepted = self._accepted(response, 202, f"POST /workflows {shape}")
        if accepted is None:
            raise Refused()
        expect = {"state": "SUCCESS", "result": evaluate(canvas)}
        self.load.ack("workflow", accepted["id"], generation, shape=shape, canvas=canvas, expect=expect)

    def submit_project(self, client: httpx.Client) -> None:
        rng = self.rng
        topic = f"Crash-safe queues {self.index}-{next(self.serial)}"
        sections = rng.randint(2, 4)
        response, _ = self.load.post(client, "/projects", {"topic": topic, "sections": sections})
        created = self._accepted(response, 201, "POST /projects")
        if created is None:
            raise Refused()
        project_id = created["id"]
        self.load.manifest.append({"type": "project_created", "id": project_id, "t": self.load.manifest.now()})
        try:
            response, generation = self.load.post(client, f"/projects/{project_id}/article", {})
        except Unavailable:
            # Its workflow may or may not be committed: the project is not acknowledged, start another.
            self.load.manifest.append({"type": "project_abandoned", "id": project_id, "t": self.load.manifest.now()})
            raise
        started = self._accepted(response, 202, "POST /projects/{id}/article")
        if started is None:
            raise Refused()
        self.load.ack(
            "project",
            project_id,
            generation,
            workflow_id=started["workflow_id"],
            topic=topic,
            sections=sections,
            expect={"status": "FINISHED", "sections": sections},
        )


class Canceller(threading.Thread):
    """Cancels acknowledged long jobs when they come due; retries until the answer is definite.

    Every answer is appended to the manifest: 200 (with the state the job was returned in), 409 because
    the job had finished (``invalid-transition``), or ``unavailable`` (no answer: the cancel may or may not
    have been stored, so it is sent again after the restart).
    """

    def __init__(self, load: Load) -> None:
        super().__init__(name="canceller", daemon=True)
        self.load = load
        self._heap: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        self._seq = itertools.count()
        self.draining = threading.Event()
        self.abort = threading.Event()

    def schedule(self, ident: str, delay: float) -> None:
        with self._lock:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), ident))

    def pending(self) -> int:
        with self._lock:
            return len(self._heap)

    def _next_due(self) -> tuple[float, str] | None:
        with self._lock:
            if not self._heap:
                return None
            due, _, ident = self._heap[0]
            if due > time.monotonic():
                return due, ""
            heapq.heappop(self._heap)
            return due, ident

    def run(self) -> None:
        with httpx.Client(timeout=self.load.config.request_timeout) as client:
            while not self.abort.is_set():
                head = self._next_due()
                if head is None:
                    if self.draining.is_set():
                        return
                    self.abort.wait(0.05)
                    continue
                due, ident = head
                if not ident:
                    self.abort.wait(min(due - time.monotonic(), 0.05))
                    continue
                try:
                    self._cancel(client, ident)
                except Exception as exc:
                    self.load.anomaly(f"canceller: {ident}: {type(exc).__name__}: {exc}")

    def _cancel(self, client: httpx.Client, ident: str) -> None:
        load = self.load
        if not load.link.up.wait(0.2):
            self.schedule(ident, 0.0)
            return
        record: dict[str, Any] = {"type": "cancel", "id": ident, "t": load.manifest.now()}
        try:
            response, generation = load.post(client, f"/jobs/{ident}/cancel")
        except Unavailable as exc:
            load.manifest.append({**record, "answer": "unavailable", "detail": str(exc)[:200]})
            self.schedule(ident, 0.2)
            return
        record["gen"] = generation
        body = response.json() if response.headers.get("content-type", "").endswith("json") else {}
        if response.status_code == 200:
            load.manifest.append({**record, "answer": 200, "state": body.get("state")})
        elif response.status_code == 409 and "invalid-transition" in str(body.get("type")):
            load.manifest.append({**record, "answer": 409, "detail": body.get("detail")})
        elif response.status_code == 409:  # "kept changing while being cancelled": not an answer yet
            load.manifest.append({**record, "answer": "conflict", "detail": body.get("detail")})
            self.schedule(ident, 0.1)
        elif response.status_code == 503:  # refused for now (storage busy): ask again
            load.manifest.append({**record, "answer": 503, "detail": response.text[:300]})
            load.refused(f"cancel {ident}: HTTP 503: {response.text[:300]}")
            self.schedule(ident, 0.2)
        else:
            load.manifest.append({**record, "answer": response.status_code, "detail": response.text[:300]})
            load.anomaly(f"cancel {ident}: HTTP {response.status_code}: {response.text[:300]}")


# --- the run ---------------------------------------------------------------------------------------------


@dataclass
class Kill:
    number: int
    mode: str
    t: float
    generation: int
    was_ready: bool
    runs_lines: int
    snapshot: DbState | None


@dataclass
class Summary:
    seed: int
    run_dir: Path
    kills: list[Kill] = field(default_factory=list)
    duration: float = 0.0
    failures: list[str] = field(default_factory=list)
    suspicious: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def render(self, limit: int = 40) -> str:
        modes = Counter(kill.mode for kill in self.kills)
        f = self.figures
        lines = [
            f"crash loop (seed {self.seed}): {len(self.kills)} kills survived "
            f"({', '.join(f'{n} {mode}' for mode, n in sorted(modes.items()))}) in {self.duration:.1f} s",
            f"  checked: {f.get('jobs_checked', 0)} jobs ({f.get('acked_by_kind', {})}), "
            f"{f.get('workflows_checked', 0)} workflows, {f.get('projects_checked', 0)} article projects",
            f"  database: {f.get('db_jobs', 0)} jobs, {f.get('db_workflows', 0)} workflows; "
            f"committed but never acknowledged: {f.get('unacked_committed', 0)}",
            f"  runs: {f.get('runs', 0)} task executions; {f.get('interrupted_reruns', 0)} jobs killed mid-run ran "
            f"again; {f.get('multi_run_jobs', 0)} ran more than once; {f.get('retried_jobs', 0)} had more than "
            f"one attempt (max {f.get('max_attempts', 0)})",
            f"  cancels: {f.get('cancel_answers', {})}; cancel jobs ended {f.get('cancel_outcomes', {})}",
            f"  submissions without an answer: {f.get('unavailable', 0)}; "
            f"startup to ready: median {f.get('startup_median', 0):.2f} s, max {f.get('startup_max', 0):.2f} s",
            f"  service warnings: {f.get('log_warnings', {})}; 503 refusals: {f.get('refused', 0)}",
            f"  code: {f.get('code', 'unknown')}; run directory: {self.run_dir}",
        ]
        for title, items in (("SUSPICIOUS", self.suspicious), ("INVARIANT FAILED", self.failures)):
            for item in items[:limit]:
                lines.append(f"  {title}: {item}")
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more {title.lower()} findings")
        lines.append(
            "  result: " + ("every invariant holds" if self.ok else f"{len(self.failures)} invariant failures")
        )
        return "\n".join(lines)


class Harness:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        if config.run_dir is None:
            self.run_dir = Path(tempfile.mkdtemp(prefix="geekblog-crash-loop-"))
        else:
            self.run_dir = Path(config.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.run_dir / "service.db"
        self.runs_path = self.run_dir / "runs.log"
        (self.run_dir / "snapshots").mkdir(exist_ok=True)
        self.t0 = time.monotonic()
        self.manifest = Manifest(self.run_dir / "manifest.jsonl", self.t0)
        self.link = Link()
        self.load = Load(config, self.link, self.manifest)
        self.service = ServiceProcess(self.run_dir, self._env())
        self.summary = Summary(seed=config.seed, run_dir=self.run_dir)

    def _env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                "GEEKBLOG_DB_PATH": str(self.db_path),
                "GEEKBLOG_TASK_MODULES": TASK_MODULE,
                "GEEKBLOG_SHUTDOWN_GRACE": "2",
                "GEEKBLOG_MODE": "production",
                "GEEKBLOG_OFFLINE_DELAY": str(self.config.offline_delay),
                RUNS_LOG_ENV: str(self.runs_path),
            }
        )
        if self.config.database_url is not None:
            env["GEEKBLOG_DATABASE_URL"] = self.config.database_url
            env["GEEKBLOG_LEASE_SECONDS"] = str(self.config.lease_seconds)
        return env

    def read_db(self) -> DbState | None:
        return read_db(self.db_path, self.config.database_url)

    def say(self, message: str) -> None:
        if self.config.log is not None:
            self.config.log(f"[{time.monotonic() - self.t0:7.1f} s] {message}")

    # -- the loop ------------------------------------------------------------------------------------------

    def run(self) -> Summary:
        threads: list[threading.Thread] = []
        try:
            self.summary.figures["code"] = code_version()
            self.manifest.append(
                {
                    "type": "start",
                    "t": 0.0,
                    "seed": self.config.seed,
                    "kills": self.config.kills,
                    "code": self.summary.figures["code"],
                }
            )
            threads = [Submitter(self.load, i) for i in range(self.config.submitters)]
            threads.append(self.load.canceller)
            for number in range(1, self.config.kills + 1):
                self._cycle(number, threads)
            self.load.stop.set()
            for thread in threads[:-1]:
                thread.join(timeout=self.config.request_timeout + 5)
            self._finish()
        except ServiceDied as exc:
            self.summary.failures.append(f"the service did not start again: {exc}")
        finally:
            self.load.stop.set()
            self.load.canceller.abort.set()
            for thread in threads:
                if thread.is_alive():
                    thread.join(timeout=self.config.request_timeout + 5)
            if self.service.alive:
                self.service.sigkill()
            self.manifest.close()
            self.summary.duration = time.monotonic() - self.t0
        if self.summary.ok and not self.config.keep and self.config.run_dir is None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.summary

    def _cycle(self, number: int, threads: list[threading.Thread]) -> None:
        """Start the service, let the load run for a random while, SIGKILL it and read what it left."""
        config, rng = self.config, self.rng
        first = number == 1
        draw = rng.random()
        if not first and draw < config.startup_kill_chance:
            mode = "startup"
        elif not first and draw < config.startup_kill_chance + config.early_kill_chance:
            mode = "early"
        elif draw < config.startup_kill_chance + config.early_kill_chance + config.inflight_kill_chance:
            mode = "inflight"
        else:
            mode = "timer"
        restart = 2.5 if not self.service.startup_times else self.service.typical_startup()
        gap = max(config.seconds / max(config.kills, 1) - restart, 0.5)
        self.service.spawn()
        if mode == "startup":
            kill_at = self.service.spawned_at + rng.uniform(0.3, 1.0) * self.service.typical_startup()
            ready = self.service.wait_ready(until=kill_at)
        else:
            ready = self.service.wait_ready(until=time.monotonic() + config.ready_timeout)
            if not ready:
                raise ServiceDied(f"not ready after {config.ready_timeout} s:\n{self.service.log_tail()}")
            delay = rng.uniform(0.0, 0.3) if mode == "early" else rng.uniform(0.2 * gap, 1.8 * gap)
            kill_at = time.monotonic() + delay
        if ready:
            self.link.publish(self.service.url, self.service.generation)
            if first:
                for thread in threads:
                    thread.start()
        self.load.stop.wait(max(kill_at - time.monotonic(), 0.0))  # the randomized kill timer
        if mode == "inflight":
            self.load.sending.clear()
            if self.load.sending.wait(2.0):
                time.sleep(rng.uniform(0.0, 0.004))  # land while the submission is being handled
        self._kill(number, mode, ready)

    def _kill(self, number: int, mode: str, was_ready: bool) -> None:
        self.link.down()
        t = self.manifest.now()
        generation = self.service.generation
        code = self.service.sigkill()
        if code != -signal.SIGKILL:
            self.summary.failures.append(
                f"kill {number}: the service (generation {generation}) had already exited on its own with {code}:\n"
                f"{self.service.log_tail()}"
            )
        runs_lines = count_lines(self.runs_path)
        snapshot = self.read_db()
        if snapshot is not None:
            with gzip.open(self.run_dir / "snapshots" / f"kill-{number:02d}.json.gz", "wt") as out:
                json.dump(snapshot.to_json(), out)
        self.manifest.append(
            {"type": "kill", "number": number, "mode": mode, "t": t, "gen": generation, "runs_lines": runs_lines}
        )
        kill = Kill(number, mode, t, generation, was_ready, runs_lines, snapshot)
        self.summary.kills.append(kill)
        jobs = len(snapshot.jobs) if snapshot else 0
        self.say(f"kill {number}/{self.config.kills} ({mode}) of generation {generation}: {jobs} jobs in the db")

    # -- the end -------------------------------------------------------------------------------------------

    def _finish(self) -> None:
        config = self.config
        self.service.spawn()
        if not self.service.wait_ready(until=time.monotonic() + config.ready_timeout):
            raise ServiceDied(f"not ready after {config.ready_timeout} s:\n{self.service.log_tail()}")
        self.link.publish(self.service.url, self.service.generation)
        deadline = time.monotonic() + config.final_timeout
        self.say(f"load stopped; generation {self.service.generation} finishing what is left")
        canceller = self.load.canceller
        canceller.draining.set()
        canceller.join(timeout=max(deadline - time.monotonic(), 1.0))
        if canceller.is_alive():
            canceller.abort.set()
            self.summary.failures.append(f"{canceller.pending()} cancels still had no definite answer at the deadline")
        manifest = read_manifest(self.manifest.path)
        waiting = self._wait_finished(manifest, deadline)
        self.say(f"waited: {len(waiting)} unfinished")
        for item in waiting[:50]:
            self.summary.failures.append(f"not finished within {config.final_timeout} s: {item}")
        api = self._read_api(manifest)
        (self.run_dir / "api.json").write_text(json.dumps(api))
        code = self.service.terminate()
        # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 after a clean stop is normal.
        if code not in (0, -signal.SIGTERM) or "Application shutdown complete" not in self.service.log_tail(20):
            self.summary.suspicious.append(
                f"the last service did not stop cleanly on SIGTERM: exit code {code}:\n{self.service.log_tail(20)}"
            )
        final = self.read_db()
        assert final is not None, "the database has no schema at the end"
        with gzip.open(self.run_dir / "snapshots" / "final.json.gz", "wt") as out:
            json.dump(final.to_json(), out)
        self.summary.figures["unavailable"] = self.load.unavailable
        times = sorted(self.service.startup_times)
        self.summary.figures["startup_median"] = times[len(times) // 2] if times else 0.0
        self.summary.figures["startup_max"] = times[-1] if times else 0.0
        self.summary.failures.extend(f"load: {message}" for message in self.load.anomalies)
        self.summary.suspicious.extend(f"refused: {message}" for message in self.load.refusals[:20])
        self.summary.figures["refused"] = len(self.load.refusals)
        check(
            self.summary,
            manifest=manifest,
            kills=self.summary.kills,
            final=final,
            api=api,
            runs=read_runs(self.runs_path),
        )
        warnings: Counter[str] = Counter()
        self.summary.suspicious.extend(scan_logs(self.run_dir, warnings))
        self.summary.figures["log_warnings"] = dict(warnings.most_common(10))

    def _wait_finished(self, manifest: list[dict[str, Any]], deadline: float) -> list[str]:
        """Poll the database until everything acknowledged, and every job and workflow in it, has finished."""
        acks = [record for record in manifest if record["type"] == "ack"]
        while True:
            state = self.read_db()
            assert state is not None
            waiting = []
            for ack in acks:
                if ack["kind"] == "project":
                    project = state.projects.get(ack["id"])
                    workflow = state.workflows.get(ack["workflow_id"])
                    if project is None or workflow is None:
                        continue  # lost: reported by the checks
                    if project["status"] not in PROJECT_DONE and workflow["state"] not in TERMINAL:
                        waiting.append(f"project {ack['id']} is {project['status']}")
                    continue
                row = state.record(ack["id"])
                if row is not None and row["state"] not in TERMINAL:
                    waiting.append(f"{ack['kind']} {ack['id']} is {row['state']}")
            for table, rows in (("job", state.jobs), ("workflow", state.workflows)):
                waiting.extend(
                    f"{table} {ident} is {row['state']}" for ident, row in rows.items() if row["state"] not in TERMINAL
                )
            if not waiting or time.monotonic() > deadline:
                return sorted(set(waiting))
            time.sleep(0.25)  # bounded by ``deadline``

    def _read_api(self, manifest: list[dict[str, Any]]) -> dict[str, Any]:
        """What the service answers for every acknowledged job, workflow and project."""
        api: dict[str, Any] = {"jobs": {}, "workflows": {}, "projects": {}, "articles": {}}
        with httpx.Client(base_url=self.service.url, timeout=self.config.request_timeout) as client:

            def get(path: str) -> httpx.Response:
                for _ in range(5):
                    with contextlib.suppress(httpx.TransportError):
                        return client.get(path)
                return client.get(path)

            for ack in manifest:
                if ack["type"] != "ack":
                    continue
                ident = ack["id"]
                if ack["kind"] in ("job", "retry", "cancel"):
                    response = get(f"/jobs/{ident}")
                    api["jobs"][ident] = response.json() if response.status_code == 200 else response.status_code
                elif ack["kind"] == "workflow":
                    response = get(f"/workflows/{ident}")
                    api["workflows"][ident] = response.json() if response.status_code == 200 else response.status_code
                else:
                    response = get(f"/projects/{ident}")
                    api["projects"][ident] = response.json() if response.status_code == 200 else response.status_code
                    response = get(f"/workflows/{ack['workflow_id']}")
                    api["workflows"][ack["workflow_id"]] = (
                        response.json() if response.status_code == 200 else response.status_code
                    )
                    response = get(f"/projects/{ident}/article")
                    api["articles"][ident] = response.text if response.status_code == 200 else response.status_code
        return api


def scan_logs(run_dir: Path, warnings: Counter[str] | None = None) -> list[str]:
    """Error lines the service logged (JSON lines in production mode), worth a look even when checks pass;
    ``warnings`` counts WARNING messages with their ids and numbers blanked out."""
    found = []
    for path in sorted(run_dir.glob("service-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    found.append(f"{path.name}: {line[:300]}")
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("level") in ("ERROR", "CRITICAL"):
                found.append(f"{path.name}: {entry.get('message')} {str(entry.get('exception', ''))[-300:]}")
            elif entry.get("level") == "WARNING" and warnings is not None:
                warnings[_BLANKS.sub("#", str(entry.get("message")))] += 1
    return found


_BLANKS = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|\d+(?:\.\d+)?")


# --- the invariants --------------------------------------------------------------------------------------


def check(
    summary: Summary,
    *,
    manifest: list[dict[str, Any]],
    kills: list[Kill],
    final: DbState,
    api: dict[str, Any],
    runs: list[tuple[str, int]],
) -> None:
    """Check invariants (a)-(e); appends to ``summary.failures`` and fills ``summary.figures``."""
    fail = summary.failures.append
    acks = [record for record in manifest if record["type"] == "ack"]
    cancels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in manifest:
        if record["type"] == "cancel":
            cancels[record["id"]].append(record)
    kinds = Counter(ack["kind"] for ack in acks)
    duplicated = [ident for ident, n in Counter(ack["id"] for ack in acks).items() if n > 1]
    if duplicated:
        fail(f"ids acknowledged twice: {duplicated[:10]}")

    runs_by_job: dict[str, list[int]] = defaultdict(list)
    run_lines: dict[str, list[int]] = defaultdict(list)
    for index, (ident, attempt) in enumerate(runs):
        runs_by_job[ident].append(attempt)
        run_lines[ident].append(index)

    def history(ident: str) -> str:
        """What each snapshot, the final database and the runs log say about ``ident``."""
        seen = []
        for kill in kills:
            row = kill.snapshot.record(ident) if kill.snapshot else None
            seen.append(f"kill {kill.number}: {_brief(row)}")
        seen.append(f"final: {_brief(final.record(ident))}")
        lines = [f"{ident} {attempt}" for ident_, attempt in runs if ident_ == ident]
        return "; ".join(seen) + f"; runs log: {lines}"

    # (a) durability: whatever was acknowledged before a kill is in the database right after it.
    for kill in kills:
        if kill.snapshot is None:
            continue
        for ack in acks:
            if ack["t"] >= kill.t:
                continue
            present = (
                ack["id"] in kill.snapshot.projects and ack["workflow_id"] in kill.snapshot.workflows
                if ack["kind"] == "project"
                else kill.snapshot.record(ack["id"]) is not None
            )
            if not present:
                fail(
                    f"(a) {ack['kind']} {ack['id']} acknowledged at {ack['t']} s (generation {ack['gen']}) "
                    f"is missing from the database after kill {kill.number} at {kill.t} s"
                )

    # (a), (c), (e) final outcomes, from the API and the database.
    cancel_outcomes: Counter[str] = Counter()
    for ack in acks:
        ident, kind = ack["id"], ack["kind"]
        if kind == "project":
            _check_project(ack, final, api, fail)
            continue
        row = final.record(ident)
        answer = (api["jobs"] if kind != "workflow" else api["workflows"]).get(ident)
        if row is None:
            fail(f"(a) {kind} {ident} acknowledged at {ack['t']} s is not in the database at the end; {history(ident)}")
            continue
        if not isinstance(answer, dict):
            fail(f"(a) {kind} {ident}: the API answered {answer} at the end")
            continue
        result = loads(row["result"])
        if answer["state"] != row["state"] or answer["result"] != result:
            fail(
                f"(a) {kind} {ident}: the API says {answer['state']} {answer['result']!r}, "
                f"the database {row['state']} {result!r}"
            )
        if kind != "workflow" and answer.get("attempts") != row["attempts"]:
            fail(f"(a) job {ident}: the API counts {answer.get('attempts')} attempts, the database {row['attempts']}")
        allowed = _allowed_outcomes(ack, cancels.get(ident, []), fail)
        outcome = (row["state"], _hashable(result))
        if kind == "cancel":
            cancel_outcomes[row["state"]] += 1
        if outcome in allowed:
            pass
        elif kind != "workflow" and _worker_lost_by_rule(row):
            summary.suspicious.append(f"job {ident} failed with WorkerLostError after {row['attempts']} attempts")
        else:
            fail(
                f"(a) {kind} {ident} ended {row['state']} {result!r} (error {row['error']}), expected one of "
                f"{sorted(allowed, key=repr)}; cancels {cancels.get(ident)}; {history(ident)}"
            )
        if kind == "retry" and row["state"] == "SUCCESS" and row["attempts"] < ack["expect"]["min_attempts"]:
            fail(
                f"(a) retry {ident} succeeded after {row['attempts']} attempts, fewer than "
                f"{ack['expect']['min_attempts']}; {history(ident)}"
            )

    # (b) no committed terminal row changes: each snapshot against the next one and the final state.
    states = [kill.snapshot for kill in kills if kill.snapshot is not None] + [final]
    labels = [f"kill {kill.number}" for kill in kills if kill.snapshot is not None] + ["final"]
    for i, before in enumerate(states[:-1]):
        for later, label in ((states[i + 1], labels[i + 1]), (final, "final")):
            for table in ("jobs", "workflows"):
                rows_before, rows_later = getattr(before, table), getattr(later, table)
                for ident, row in rows_before.items():
                    if row["state"] not in TERMINAL:
                        continue
                    other = rows_later.get(ident)
                    if other is None or terminal_row(other) != terminal_row(row):
                        fail(
                            f"(b) {table[:-1]} {ident} was {terminal_row(row)} after {labels[i]} "
                            f"but {terminal_row(other) if other else 'missing'} at {label}; {history(ident)}"
                        )
            for ident, project in before.projects.items():
                if project["status"] == "FINISHED":
                    other = later.projects.get(ident)
                    if other is None or other["status"] != "FINISHED" or other["finished"] != project["finished"]:
                        fail(
                            f"(b) project {ident} was FINISHED after {labels[i]} but "
                            f"{other['status'] if other else 'missing'} (text changed) at {label}"
                        )

    # (c) every workflow step became exactly one job; everything in the database finished.
    nodes = Counter((row["workflow_id"], row["node"]) for row in final.jobs.values() if row["workflow_id"])
    twice = [node for node, n in nodes.items() if n > 1]
    if twice:
        fail(f"(c) workflow steps that became more than one job: {twice[:10]}")
    for table, rows in (("job", final.jobs), ("workflow", final.workflows)):
        stuck = [ident for ident, row in rows.items() if row["state"] not in TERMINAL]
        if stuck:
            fail(f"(a) {len(stuck)} {table}s never finished: {stuck[:10]}")
    acked_workflows = {ack["id"] for ack in acks if ack["kind"] == "workflow"}
    acked_workflows |= {ack["workflow_id"] for ack in acks if ack["kind"] == "project"}
    for ident in _closure_jobs(final, acked_workflows):
        if final.jobs[ident]["state"] != "SUCCESS":
            row = final.jobs[ident]
            fail(f"(c) job {ident} ({row['task']}) of an acknowledged workflow ended {row['state']} {row['error']}")

    # (d) runs: never more than the attempts counted, no attempt twice, nothing after a committed end.
    for ident, attempts in runs_by_job.items():
        row = final.jobs.get(ident)
        if row is None:
            fail(f"(d) job {ident} ran {attempts} but is not in the database")
            continue
        if len(attempts) != len(set(attempts)):
            fail(f"(d) job {ident}: an attempt ran twice: {attempts}; {history(ident)}")
        if len(attempts) > row["attempts"] or max(attempts) > row["attempts"]:
            fail(
                f"(d) job {ident} ran {len(attempts)} times (attempts {attempts}) but counts {row['attempts']}; "
                f"{history(ident)}"
            )
        if row["state"] == "SUCCESS" and max(attempts) != row["attempts"]:
            fail(
                f"(d) job {ident} succeeded with attempts={row['attempts']} but its last run was attempt "
                f"{max(attempts)}; {history(ident)}"
            )
    # ... and a job runs again only after a failed attempt (rl.flaky's first ones) or a kill in between.
    kill_lines = sorted(kill.runs_lines for kill in kills)
    for ident, lines in run_lines.items():
        row = final.jobs.get(ident)
        if row is None:
            continue
        args = loads(row.get("args")) or []
        fails = args[1] if row["task"] == "rl.flaky" and len(args) > 1 else 0
        for this, following in itertools.pairwise(lines):
            attempt = runs[this][1]
            if attempt <= fails:
                continue
            if not any(this < line <= following for line in kill_lines):
                fail(
                    f"(d) job {ident} ({row['task']}) ran attempt {runs[following][1]} (runs log line "
                    f"{following + 1}) after attempt {attempt} (line {this + 1}) with no kill in between; "
                    f"{history(ident)}"
                )
    for kill in kills:
        if kill.snapshot is None:
            continue
        for index in range(kill.runs_lines, len(runs)):
            ident, attempt = runs[index]
            row = kill.snapshot.jobs.get(ident)
            if row is not None and row["state"] in TERMINAL:
                fail(
                    f"(d) job {ident} ran again (attempt {attempt}, runs log line {index + 1}) after its "
                    f"{row['state']} was committed before kill {kill.number}; {history(ident)}"
                )
    for ack in acks:
        succeeded = final.jobs.get(ack["id"], {}).get("state") == "SUCCESS"
        if ack["kind"] in ("job", "retry") and succeeded and not runs_by_job.get(ack["id"]):
            fail(f"(d) job {ack['id']} succeeded without a run in the runs log")

    # figures; a job running when the process was killed and run again by a later one was interrupted
    interrupted = 0
    for kill in kills:
        if kill.snapshot is None:
            continue
        running = {i for i, row in kill.snapshot.jobs.items() if row["state"] == "STARTED" and not row["waiting_on"]}
        interrupted += len(running & {ident for ident, _ in runs[kill.runs_lines :]})
    acked_jobs = {ack["id"] for ack in acks if ack["kind"] in ("job", "retry", "cancel")}
    top_jobs = {ident for ident, row in final.jobs.items() if row["workflow_id"] is None}
    top_workflows = {ident for ident, row in final.workflows.items() if row["parent_job_id"] is None}
    summary.figures.update(
        {
            "acked_by_kind": dict(sorted(kinds.items())),
            "jobs_checked": len(acked_jobs),
            "workflows_checked": kinds["workflow"] + kinds["project"],
            "projects_checked": kinds["project"],
            "db_jobs": len(final.jobs),
            "db_workflows": len(final.workflows),
            "unacked_committed": len(top_jobs - acked_jobs) + len(top_workflows - acked_workflows),
            "runs": len(runs),
            "interrupted_reruns": interrupted,
            "multi_run_jobs": sum(1 for attempts in runs_by_job.values() if len(attempts) > 1),
            "retried_jobs": sum(1 for row in final.jobs.values() if row["attempts"] > 1),
            "max_attempts": max((row["attempts"] for row in final.jobs.values()), default=0),
            "cancel_answers": dict(Counter(str(c["answer"]) for cs in cancels.values() for c in cs)),
            "cancel_outcomes": dict(cancel_outcomes),
        }
    )


def _brief(row: dict[str, Any] | None) -> str:
    if row is None:
        return "absent"
    parts = [row["state"]]
    if "attempts" in row:
        parts.append(f"attempts={row['attempts']}")
    if row.get("result") is not None:
        parts.append(f"result={row['result'][:60]}")
    if row.get("error") is not None:
        parts.append(f"error={loads(row['error']).get('type')}")
    return " ".join(parts)


def _allowed_outcomes(ack: dict[str, Any], answers: list[dict[str, Any]], fail: Callable[[str], None]) -> set[Any]:
    """The (state, result) pairs an acknowledged job or workflow may end with."""
    expect = ack["expect"]
    normal = (expect["state"], _hashable(expect["result"]))
    if ack["kind"] != "cancel":
        return {normal}
    revoked = ("REVOKED", None)
    ok = [answer for answer in answers if answer["answer"] == 200]
    if ok:
        if any(answer.get("state") != "REVOKED" for answer in ok):
            fail(f"(a) cancel of {ack['id']} answered 200 with the job {[a.get('state') for a in ok]}, not REVOKED")
        return {revoked}
    finished = any(answer["answer"] == 409 for answer in answers)
    unanswered = any(answer["answer"] == "unavailable" for answer in answers)
    if finished and not unanswered:
        return {normal}  # the job had finished before the only cancel
    return {normal, revoked}  # a cancel may or may not have been stored before a kill


def _hashable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value


def _worker_lost_by_rule(row: dict[str, Any]) -> bool:
    error = loads(row["error"]) or {}
    return row["state"] == "FAILURE" and error.get("type") == "WorkerLostError" and row["attempts"] > row["max_retries"]


def _closure_jobs(final: DbState, workflows: set[str]) -> set[str]:
    """The jobs acknowledged workflows consist of, through replacement workflows."""
    jobs: set[str] = set()
    while True:
        jobs |= {ident for ident, row in final.jobs.items() if row["workflow_id"] in workflows}
        grown = workflows | {ident for ident, row in final.workflows.items() if row["parent_job_id"] in jobs}
        if grown == workflows:
            return jobs
        workflows = grown


def _check_project(ack: dict[str, Any], final: DbState, api: dict[str, Any], fail: Callable[[str], None]) -> None:
    ident, workflow_id, sections = ack["id"], ack["workflow_id"], ack["sections"]
    project = final.projects.get(ident)
    workflow = final.workflows.get(workflow_id)
    if project is None or workflow is None:
        fail(f"(a) project {ident} or its workflow {workflow_id} is not in the database at the end")
        return
    answer = api["projects"].get(ident)
    if not isinstance(answer, dict) or answer["status"] != project["status"]:
        status = answer["status"] if isinstance(answer, dict) else answer
        fail(f"(e) project {ident}: the API says {status}, the database {project['status']}")
    if project["status"] != "FINISHED":
        fail(
            f"(e) project {ident} ended {project['status']} (error {project['error']}); workflow "
            f"{workflow_id} {workflow['state']} {workflow['error']}"
        )
        return
    plan = loads(project["plan"]) or {"sections": []}
    titles = [section["title"] for section in plan["sections"]]
    finished = project["finished"] or ""
    if len(titles) != sections or len(set(titles)) != len(titles) or headings(finished) != titles:
        fail(f"(e) project {ident}: {sections} sections wanted, plan {titles}, headings {headings(finished)}")
    article = api["articles"].get(ident)
    if article != finished:
        fail(f"(e) project {ident}: GET /projects/{{id}}/article answered {str(article)[:80]!r}, not the finished text")
    expected = {"project_id": ident, "words": len(finished.split())}
    wf_answer = api["workflows"].get(workflow_id)
    if workflow["state"] != "SUCCESS" or loads(workflow["result"]) != expected:
        fail(f"(c) project workflow {workflow_id} ended {workflow['state']} {workflow['result']}, expected {expected}")
    if not isinstance(wf_answer, dict) or wf_answer["state"] != workflow["state"]:
        fail(f"(a) project workflow {workflow_id}: the API says {wf_answer}, the database {workflow['state']}")


# --- command line ----------------------------------------------------------------------------------------


def run(config: Config) -> Summary:
    return Harness(config).run()


def load_db_json(path: Path) -> DbState:
    with gzip.open(path, "rt") as source:
        data = json.load(source)
    return DbState(jobs=data["jobs"], workflows=data["workflows"], projects=data["projects"])


def verify_run_dir(run_dir: Path) -> Summary:
    """Check the invariants again from what a kept run directory holds (``--verify DIR``)."""
    manifest = read_manifest(run_dir / "manifest.jsonl")
    start = next((record for record in manifest if record["type"] == "start"), {})
    summary = Summary(seed=start.get("seed", -1), run_dir=run_dir)
    summary.figures["code"] = start.get("code", "unknown")
    for record in manifest:
        if record["type"] == "kill":
            path = run_dir / "snapshots" / f"kill-{record['number']:02d}.json.gz"
            snapshot = load_db_json(path) if path.exists() else None
            summary.kills.append(
                Kill(record["number"], record["mode"], record["t"], record["gen"], True, record["runs_lines"], snapshot)
            )
    check(
        summary,
        manifest=manifest,
        kills=summary.kills,
        final=load_db_json(run_dir / "snapshots" / "final.json.gz"),
        api=json.loads((run_dir / "api.json").read_text()),
        runs=read_runs(run_dir / "runs.log"),
    )
    return summary


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--kills", type=int, default=25, help="SIGKILLs to survive (default 25)")
    parser.add_argument("--seconds", type=float, default=300.0, help="planned length of the load phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--submitters", type=int, default=2, help="threads submitting work")
    parser.add_argument("--final-timeout", type=float, default=300.0)
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (kept anyway on a failure)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("--verify", metavar="DIR", help="only check the invariants again on a kept run directory")
    parser.add_argument("--database-url", help="run on this (empty) PostgreSQL database instead of SQLite")
    parser.add_argument("--lease-seconds", type=float, default=3.0, help="GEEKBLOG_LEASE_SECONDS on PostgreSQL")
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.verify:
        summary = verify_run_dir(Path(args.verify))
        print(summary.render(limit=200))
        return 0 if summary.ok else 1
    config = Config(
        kills=args.kills,
        seconds=args.seconds,
        seed=args.seed,
        submitters=args.submitters,
        final_timeout=args.final_timeout,
        run_dir=Path(args.keep) if args.keep else None,
        keep=bool(args.keep),
        log=None if args.quiet else lambda line: print(line, flush=True),
        database_url=args.database_url,
        lease_seconds=args.lease_seconds,
    )
    summary = run(config)
    print(summary.render(limit=200))
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
