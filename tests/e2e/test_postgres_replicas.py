"""Three ``geekblog serve`` replicas and one ``geekblog worker`` on one PostgreSQL database, one replica
SIGKILLed mid-load and restarted: every acknowledged job finishes, workflows give the right results, and
no job that was not running on the killed replica runs twice.

Jobs run ``e2e.recorded`` (``tests/e2e/service_tasks.py``), which writes a ``start`` and an ``end`` line
with its job id and process id to a shared file: which process ran what, and how often, is read from it.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GEEKBLOG, ROOT, free_port
from tests.support.postgres import create_database, drop_database

LEASE_SECONDS = "2"
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}


@dataclass
class Engine:
    """One engine process: a ``serve`` replica (``port`` set) or a ``worker``."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            if self.port is None:
                if self.name in self.log():  # the worker's start-up line names its replica
                    return
            else:
                try:
                    if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def database() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def engine_env(database: str, runs: Path, name: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "GEEKBLOG_DATABASE_URL": database,
            "GEEKBLOG_TASK_MODULES": "tests.e2e.service_tasks",
            "GEEKBLOG_LEASE_SECONDS": LEASE_SECONDS,
            "GEEKBLOG_MAX_CONCURRENT_TASKS": "4",
            "GEEKBLOG_SHUTDOWN_GRACE": "2",
            "GEEKBLOG_REPLICA": name,
            "E2E_RUNS_FILE": str(runs),
        }
    )
    return env


def serve_replica(database: str, runs: Path, tmp_path: Path, name: str) -> Engine:
    port = free_port()
    return Engine(
        name=name,
        command=[str(GEEKBLOG), "serve", "--port", str(port)],
        env=engine_env(database, runs, name),
        log_path=tmp_path / f"{name}.log",
        port=port,
    )


class Load:
    """What was acknowledged (a 202) through which replica, and what each should give."""

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}  # job id -> expected result
        self.workflows: dict[str, int] = {}  # workflow id -> expected result
        self.refused = 0  # requests to a replica that was down: never acknowledged, nothing to expect

    def submit(self, client: httpx.Client, index: int) -> None:
        """Each tenth request a chain or a chord, else one job."""
        try:
            if index % 10 == 3:
                canvas: dict[str, Any] = {
                    "chain": [
                        {"task": "e2e.recorded", "args": [index, 1]},
                        {"task": "e2e.recorded", "args": [2]},
                        {"task": "e2e.recorded", "args": [3]},
                    ]
                }
                response = client.post("/workflows", json={"canvas": canvas})
                expected = index + 6
            elif index % 10 == 7:
                header = [{"task": "e2e.recorded", "args": [index, k]} for k in range(5)]
                canvas = {"chord": {"header": header, "body": {"task": "e2e.total"}}}
                response = client.post("/workflows", json={"canvas": canvas})
                expected = 5 * index + 10
            else:
                response = client.post("/jobs", json={"task": "e2e.recorded", "args": [index, index]})
                expected = 2 * index
        except httpx.TransportError:
            self.refused += 1
            return
        assert response.status_code == 202, response.text
        body = response.json()
        (self.workflows if index % 10 in (3, 7) else self.jobs)[body["id"]] = expected


def runs_by_job(runs: Path) -> dict[str, list[tuple[str, int]]]:
    """For each job id, its ``start`` / ``end`` lines in order, as (what, pid)."""
    seen: dict[str, list[tuple[str, int]]] = collections.defaultdict(list)
    if runs.exists():
        for line in runs.read_text().splitlines():
            what, job_id, pid = line.split()
            seen[job_id].append((what, int(pid)))
    return seen


def wait_until(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def test_three_replicas_and_a_worker_survive_a_sigkilled_replica(database: str, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    replicas = [serve_replica(database, runs, tmp_path, f"r{n}") for n in (1, 2, 3)]
    worker = Engine(
        name="w1",
        command=[str(GEEKBLOG), "worker", "--concurrency", "4"],
        env=engine_env(database, runs, "w1"),
        log_path=tmp_path / "w1.log",
    )
    engines = [*replicas, worker]
    opened: list[httpx.Client] = []
    try:
        for engine in engines:
            engine.start()
        clients = [httpx.Client(base_url=replica.url, timeout=10) for replica in replicas]
        opened.extend(clients)
        load = Load()
        for index in range(120):
            load.submit(clients[index % 3], index)

        # Kill r2 while it runs jobs: wait until a job of this load is running in its process.
        victim = replicas[1]
        assert victim.process is not None
        killed_pid = victim.process.pid
        wait_until(
            lambda: any(lines[-1] == ("start", killed_pid) for lines in runs_by_job(runs).values()),
            20,
            "r2 never ran a job",
        )
        victim.kill()
        for index in range(120, 240):
            load.submit(clients[index % 3], index)  # a third of these meet the dead replica: refused
        victim.port = free_port()
        victim.command = [str(GEEKBLOG), "serve", "--port", str(victim.port)]
        victim.start()
        clients[1] = httpx.Client(base_url=victim.url, timeout=10)
        opened.append(clients[1])
        for index in range(240, 300):
            load.submit(clients[index % 3], index)
        assert load.refused > 0  # the kill landed mid-load

        # Every acknowledged job and workflow finishes, read through any replica, with the right result.
        pending = {("jobs", job_id) for job_id in load.jobs} | {("workflows", wf) for wf in load.workflows}
        finished: dict[tuple[str, str], dict[str, Any]] = {}

        def all_finished() -> bool:
            for key in sorted(pending - finished.keys()):
                body = clients[len(finished) % 3].get(f"/{key[0]}/{key[1]}").json()
                if body["state"] not in TERMINAL:
                    return False
                finished[key] = body
            return True

        wait_until(all_finished, 90, f"{len(pending) - len(finished)} acknowledged job(s) never finished")
        for (collection, ident), body in finished.items():
            expected = (load.jobs if collection == "jobs" else load.workflows)[ident]
            assert (body["state"], body["result"]) == ("SUCCESS", expected), (collection, ident, body)

        # A job ran twice only if its first run was in the killed process and never ended there.
        for job_id, lines in runs_by_job(runs).items():
            starts = [pid for what, pid in lines if what == "start"]
            assert all(pid == killed_pid for pid in starts[:-1]), (
                f"job {job_id} ran twice though it was not running on the killed replica: {lines}"
            )
        # The queue is shared: the worker, which was sent nothing, ran jobs too.
        pids = {pid for lines in runs_by_job(runs).values() for _, pid in lines}
        assert worker.process is not None and worker.process.pid in pids
    finally:
        for client in opened:
            client.close()
        for engine in engines:
            engine.stop()
