"""``geekblog worker``, run as the real executable: on PostgreSQL beside ``geekblog serve`` (the jobs of one
database shared, each process at its own concurrency, ``/ready`` and ``/metrics`` telling the shared queue from
the replica's own jobs); on SQLite refused while another engine has the file, else that file's one engine; and
stopped by SIGTERM with the running job given its grace.

The first test queues the jobs before the workers start (the serve process's one slot held by a gated job), so
every engine claims them at start; the second starts an idle worker first: LISTEN/NOTIFY tells it of a job
submitted through serve at once, and serve's event stream and cancel reach the job the worker runs."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.conftest import GEEKBLOG, ROOT, Service, service_env
from tests.e2e.test_cli import assert_one_line_error, run_cli
from tests.support.metrics import value
from tests.support.postgres import create_database, drop_database

START_LINE = "GeekBlog Tasks worker:"


def eventually(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """``predicate()``'s first true value, polled until ``timeout`` seconds have passed (then a failure)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


@dataclass
class Worker:
    """A ``geekblog worker`` process, its stdout and stderr in ``log_path``."""

    env: dict[str, str]
    log_path: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(GEEKBLOG), "worker", *self.args], cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.wait_for_log(START_LINE, timeout)

    def wait_for_log(self, text: str, timeout: float = 30.0) -> str:
        """The first line of the log holding ``text``; fails if the process exits first."""

        def found() -> str | None:
            line = next((line for line in self.log().splitlines() if text in line), None)
            assert line is not None or self.process is None or self.process.poll() is None, (
                f"the worker exited with {self.process and self.process.returncode} before {text!r}:\n{self.log()}"
            )
            return line

        line: str = eventually(found, f"{text!r} in the worker's log", timeout)
        return line

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """The workers a test starts, killed at the end if still running."""
    started: list[Worker] = []
    yield started
    for worker in started:
        if worker.process is not None and worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


@pytest.fixture
def services() -> Iterator[list[Service]]:
    started: list[Service] = []
    yield started
    for service in started:
        if service.process is not None and service.process.poll() is None:
            service.stop(signal.SIGKILL)


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own, named with a password (trust authentication ignores it) to
    check no line shows it."""
    url = create_database()
    parts = urlsplit(url)
    netloc = parts.netloc.replace("postgres@", "postgres:s3cret@", 1)
    assert "s3cret" in netloc
    try:
        yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    finally:
        drop_database(url)


def submit_pid(client: httpx.Client, gate: Path | None = None) -> str:
    """An ``e2e.pid`` job (held until ``gate`` exists, if given); its id."""
    kwargs = {} if gate is None else {"gate": str(gate)}
    response = client.post("/jobs", json={"task": "e2e.pid", "kwargs": kwargs})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def states(client: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    return {job_id: client.get(f"/jobs/{job_id}").json() for job_id in ids}


def all_in(client: httpx.Client, ids: list[str], state: str) -> dict[str, dict[str, Any]] | None:
    jobs = states(client, ids)
    return jobs if all(job["state"] == state for job in jobs.values()) else None


def test_the_cli_lists_the_worker_command() -> None:
    shown = run_cli("--help")
    assert shown.returncode == 0, shown.stderr
    assert "worker" in shown.stdout and "run the engine without HTTP" in shown.stdout


def test_workers_on_postgres_share_the_jobs_submitted_through_serve_each_at_its_concurrency(
    tmp_path: Path, database_url: str, services: list[Service], workers: list[Worker]
) -> None:
    service = Service(
        db_path=tmp_path / "unused.db",
        log_path=tmp_path / "service.log",
        extra_env={
            "GEEKBLOG_DATABASE_URL": database_url,
            "GEEKBLOG_MAX_CONCURRENT_TASKS": "1",
            "GEEKBLOG_REPLICA": "web-1",
        },
    )
    services.append(service)
    service.start()
    gate_serve, gate_workers = tmp_path / "gate-serve", tmp_path / "gate-workers"
    with service.client() as client:
        held = submit_pid(client, gate_serve)  # the service's one slot, until its gate opens
        eventually(lambda: all_in(client, [held], "STARTED"), "the service runs the held job")
        queued = [submit_pid(client, gate_workers) for _ in range(4)]
        assert all_in(client, queued, "PENDING"), "the service has no slot free: the jobs wait in the database"

        for name in ("worker-1", "worker-2"):
            # GEEKBLOG_MAX_CONCURRENT_TASKS would let the first worker take all four: --concurrency wins.
            env = service_env(
                tmp_path / "unused.db",
                GEEKBLOG_DATABASE_URL=database_url,
                GEEKBLOG_MAX_CONCURRENT_TASKS="10",
                GEEKBLOG_REPLICA=name,
            )
            worker = Worker(env=env, log_path=tmp_path / f"{name}.log", args=("--concurrency", "2"))
            workers.append(worker)
            worker.start()
            line = worker.wait_for_log(START_LINE)
            assert f"replica {name}" in line and "concurrency 2" in line, line
            assert f"PostgreSQL at postgresql://postgres@{urlsplit(database_url).hostname}:" in line, line
            assert "s3cret" not in worker.log()

        eventually(lambda: all_in(client, queued, "STARTED"), "both workers run two jobs each")

        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.headers["x-geekblog-replica"] == "web-1"
        assert ready.json() == {
            "status": "ok",
            "detail": None,
            "replica": "web-1",
            "storage": "postgres",
            "shared_queue": {"waiting": 0, "running": 5},  # every replica's jobs, as the database counts them
            "running_here": 1,  # this replica's own
        }
        metrics = client.get("/metrics")
        assert metrics.headers["x-geekblog-replica"] == "web-1"
        for name, labels, expected in (
            ("geekblog_replica_info", {"replica": "web-1", "storage": "postgres"}, 1),
            ("geekblog_shared_jobs", {"state": "STARTED"}, 5),
            ("geekblog_shared_queue_waiting", {}, 0),
            ("geekblog_replica_jobs_running", {}, 1),
        ):
            assert value(metrics.text, name, **labels) == expected, (name, labels, metrics.text)

        gate_workers.touch()
        done = eventually(lambda: all_in(client, queued, "SUCCESS"), "the workers finish their jobs")
        ran_by = Counter(job["result"] for job in done.values())
        assert ran_by == {workers[0].pid: 2, workers[1].pid: 2}, (ran_by, [w.pid for w in workers])

        gate_serve.touch()
        finished = eventually(lambda: all_in(client, [held], "SUCCESS"), "the service finishes its job")
        assert service.process is not None and finished[held]["result"] == service.process.pid

    for worker in workers:
        assert worker.stop() == 0, worker.log()
        assert "Traceback" not in worker.log()


def test_a_worker_is_refused_with_one_line_while_serve_holds_the_sqlite_file(service: Service) -> None:
    refused = subprocess.run(
        [str(GEEKBLOG), "worker"], cwd=ROOT, env=service.env, capture_output=True, text=True, timeout=60
    )
    line = assert_one_line_error(refused, 1, "in use by another engine", "PostgreSQL", "GEEKBLOG_DATABASE_URL")
    assert str(service.db_path) in line
    assert START_LINE not in refused.stdout
    with service.client() as client:
        assert client.get("/ready").json()["status"] == "ok", "the service still runs"


def test_a_worker_alone_on_a_sqlite_file_runs_its_queue_and_sigterm_gives_the_running_job_its_grace(
    tmp_path: Path, services: list[Service], workers: list[Worker]
) -> None:
    db = tmp_path / "tasks.db"
    service = Service(
        db_path=db,
        log_path=tmp_path / "service.log",
        extra_env={"GEEKBLOG_MAX_CONCURRENT_TASKS": "1", "GEEKBLOG_SHUTDOWN_GRACE": "0.1"},
    )
    services.append(service)
    service.start()
    gate_held, gate_last = tmp_path / "gate-held", tmp_path / "gate-last"
    with service.client() as client:
        held = submit_pid(client, gate_held)
        eventually(lambda: all_in(client, [held], "STARTED"), "the service runs the held job")
        quick = [submit_pid(client) for _ in range(3)]
        last = submit_pid(client, gate_last)
        assert all_in(client, [*quick, last], "PENDING")
    # The held job is cut off, left to recovery; uvicorn re-raises the SIGTERM it handled.
    assert service.stop() in (0, -signal.SIGTERM), service.log()
    gate_held.touch()

    env = service_env(db, GEEKBLOG_SHUTDOWN_GRACE="20", GEEKBLOG_REPLICA="solo")
    worker = Worker(env=env, log_path=tmp_path / "worker.log", args=("--concurrency", "2"))
    workers.append(worker)
    worker.start()
    line = worker.wait_for_log(START_LINE)
    assert "replica solo" in line and f"SQLite at {db}" in line and "concurrency 2" in line, line

    def stored() -> dict[str, tuple[str, str | None]]:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:  # a reader beside the worker (WAL)
            return {row[0]: (row[1], row[2]) for row in connection.execute("SELECT id, state, result FROM jobs")}

    eventually(
        lambda: all(stored()[job_id][0] == "SUCCESS" for job_id in [held, *quick]) and stored()[last][0] == "STARTED",
        "the worker runs the queue, the held job recovered, and waits on the last job",
    )
    assert worker.process is not None
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_for_log("for 1 running job(s)")  # the dispatcher stopping: "waiting up to 20.0 s for 1 running job(s)"
    gate_last.touch()  # only now can the running job finish: within its grace
    assert worker.process.wait(30) == 0, worker.log()
    jobs = stored()
    assert {job_id: jobs[job_id] for job_id in [held, *quick, last]} == {
        job_id: ("SUCCESS", str(worker.pid)) for job_id in [held, *quick, last]
    }
    assert "to recovery at the next start" not in worker.log(), "no job was left to recovery"


def test_an_idle_worker_hears_of_work_at_once_and_serve_follows_and_cancels_what_it_runs(
    tmp_path: Path, database_url: str, services: list[Service], workers: list[Worker]
) -> None:
    poll = {"GEEKBLOG_POLL_SECONDS": "30"}  # far above the bounds below: only a notification meets them
    service = Service(
        db_path=tmp_path / "unused.db",
        log_path=tmp_path / "service.log",
        extra_env={"GEEKBLOG_DATABASE_URL": database_url, "GEEKBLOG_MAX_CONCURRENT_TASKS": "1", **poll},
    )
    services.append(service)
    service.start()
    with service.client() as client:
        held = submit_pid(client, tmp_path / "gate-serve")  # the service's one slot, until the end
        eventually(lambda: all_in(client, [held], "STARTED"), "the service runs the held job")
        env = service_env(tmp_path / "unused.db", GEEKBLOG_DATABASE_URL=database_url, **poll)
        worker = Worker(env=env, log_path=tmp_path / "worker.log", args=("--concurrency", "2"))
        workers.append(worker)
        worker.start()  # idle: the queue is empty

        submitted = time.monotonic()
        quick = submit_pid(client)
        done = eventually(lambda: all_in(client, [quick], "SUCCESS"), "the idle worker runs it", timeout=5.0)
        assert time.monotonic() - submitted < 5.0 and done[quick]["result"] == worker.pid

        marker = tmp_path / "cancelled"
        response = client.post("/jobs", json={"task": "e2e.held", "args": [str(marker)]})
        running = response.json()["id"]
        eventually(lambda: client.get(f"/jobs/{running}").json()["progress"], "the worker runs it", timeout=5.0)
        frames: list[str] = []
        with service.client() as watcher, watcher.stream("GET", f"/jobs/{running}/events") as stream:
            lines = stream.iter_lines()
            while not frames or frames[-1] != "":  # the current state, sent first
                frames.append(next(lines))
            cancelled = client.post(f"/jobs/{running}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "REVOKED", cancelled.text
            assert marker.read_text() == str(worker.pid)  # its code was stopped, on the worker
            frames.extend(lines)  # the stream ends after the terminal event
        data = [line for line in frames if line.startswith("data: ")]
        assert '"state":"STARTED"' in data[0] and '"state":"REVOKED"' in data[-1], frames
        assert sum('"state":"REVOKED"' in line for line in data) == 1
        (tmp_path / "gate-serve").touch()
        eventually(lambda: all_in(client, [held], "SUCCESS"), "the service finishes its job")
    assert worker.stop() == 0, worker.log()
    assert "Traceback" not in worker.log()


def test_serve_that_runs_no_jobs_leaves_every_job_to_the_workers(
    tmp_path: Path, database_url: str, services: list[Service], workers: list[Worker]
) -> None:
    extra = {"GEEKBLOG_DATABASE_URL": database_url, "GEEKBLOG_POLL_SECONDS": "30"}
    service = Service(
        db_path=tmp_path / "unused.db",
        log_path=tmp_path / "service.log",
        extra_env={**extra, "GEEKBLOG_RUN_JOBS": "false"},
    )
    services.append(service)
    service.start()
    assert "runs no jobs" in service.log()
    with service.client() as client:
        queued = [submit_pid(client) for _ in range(3)]
        assert all_in(client, queued, "PENDING"), "nothing runs them before a worker is there"
        worker = Worker(env=service_env(tmp_path / "unused.db", **extra), log_path=tmp_path / "worker.log")
        workers.append(worker)
        worker.start()
        later = [submit_pid(client) for _ in range(3)]  # the worker is told at once (the poll is 30 s)
        done = eventually(lambda: all_in(client, queued + later, "SUCCESS"), "the worker runs them", timeout=10.0)
        assert {job["result"] for job in done.values()} == {worker.pid}
    assert worker.stop() == 0, worker.log()


def test_a_worker_refuses_to_run_no_jobs_with_one_line(database_url: str) -> None:
    env = service_env(Path("unused.db"), GEEKBLOG_DATABASE_URL=database_url, GEEKBLOG_RUN_JOBS="false")
    result = subprocess.run([str(GEEKBLOG), "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, 2, "a worker runs jobs", "GEEKBLOG_RUN_JOBS")
