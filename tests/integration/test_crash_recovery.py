"""Crash recovery: SIGKILL an engine mid-run, restart it on the same database, check nothing is lost; on
a SQLite file and on PostgreSQL.

The engine runs in a child process (``crash_child.py``, tasks in ``crash_tasks.py``). The child
writes every acknowledged handle to a manifest (fsynced after each acknowledgement) and every task
execution to a runs log; the test reads the database as another process would (SQLite read-only, or
a PostgreSQL connection of its own). On PostgreSQL the restarted engine cannot know the killed one is
dead (another engine may share the database): it recovers the jobs the killed one held only once their
leases expire, so the children run with a lease of :data:`PG_LEASE_SECONDS` and recovery is waited for
within a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import empty_tables_blocking, fetch_blocking

pytestmark = pytest.mark.slow  # long: a SIGKILLed child and its restart (make test still runs it)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHILD = HERE / "crash_child.py"
TERMINAL = {"SUCCESS", "FAILURE", "REVOKED"}
PG_LEASE_SECONDS = 3.0
"""The children's lease on PostgreSQL: how long after the kill the restarted engine may take their jobs."""


# --- the database -----------------------------------------------------------------------------------------


class Database:
    """The database the children share: a SQLite file in the test's directory, or the run's PostgreSQL
    database (emptied first)."""

    def __init__(self, tmp_path: Path, url: str | None = None) -> None:
        self.path = tmp_path / "jobs.db"
        self.url = url
        if url is not None:
            empty_tables_blocking(url)

    def child_args(self) -> list[str]:
        if self.url is None:
            return ["--db", str(self.path)]
        return ["--database-url", self.url, "--lease-seconds", str(PG_LEASE_SECONDS)]

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of ``table`` (``jobs`` or ``workflows``), as another process reads it now."""
        if self.url is not None:
            return [dict(row) for row in fetch_blocking(self.url, f"SELECT * FROM {table}")]
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        connection.row_factory = sqlite3.Row
        try:
            return [dict(row) for row in connection.execute(f"SELECT * FROM {table}")]
        finally:
            connection.close()

    def count(self, state: str) -> int:
        """Jobs in ``state`` now (0 before the schema exists)."""
        if self.url is not None:
            rows = fetch_blocking(self.url, "SELECT count(*) FROM jobs WHERE state = $1", state)
            return int(rows[0][0])
        if not self.path.exists():
            return 0
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            return int(connection.execute("SELECT count(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0])
        except sqlite3.OperationalError:  # the schema is not created yet
            return 0
        finally:
            connection.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    if request.param == "sqlite":
        return Database(tmp_path)
    return Database(tmp_path, request.getfixturevalue("postgres_url"))


# --- the child process ----------------------------------------------------------------------------------


class Child:
    """One run of ``crash_child.py``; its output goes to files in the test's directory."""

    def __init__(self, tmp_path: Path, database: Database, phase: str, timeout: float = 60.0) -> None:
        self.phase = phase
        self.out = tmp_path / f"{phase}.out"
        self.err = tmp_path / f"{phase}.err"
        env = {
            **os.environ,
            "CRASH_RUNS_LOG": str(tmp_path / "runs.log"),
            "CRASH_PHASE": phase,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        command = [
            sys.executable,
            str(CHILD),
            phase,
            *database.child_args(),
            "--manifest",
            str(tmp_path / "manifest.jsonl"),
            "--timeout",
            str(timeout),
        ]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)

    def output(self) -> str:
        return (
            f"--- {self.phase} stdout ---\n{self.out.read_text()}\n--- {self.phase} stderr ---\n{self.err.read_text()}"
        )

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"{self.phase} child exited early with {self.process.returncode}\n{self.output()}")

    def sigkill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        assert self.process.returncode == -signal.SIGKILL

    def wait_ok(self, timeout: float) -> None:
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.phase} child did not finish within {timeout} s\n{self.output()}")
        assert code == 0, f"{self.phase} child exited with {code}\n{self.output()}"
        assert "Traceback" not in self.err.read_text(), f"the {self.phase} child logged an error\n{self.output()}"

    def reap(self) -> None:
        """Kill the child if it still runs (the ``finally`` of every test)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def poll_until(condition: Callable[[], bool], timeout: float, what: str, child: Child) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        child.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}\n{child.output()}")
        time.sleep(0.01)


# --- reading what the child left ---------------------------------------------------------------------------


def read_manifest(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]


def read_runs(tmp_path: Path) -> list[tuple[str, str, int]]:
    """Every task execution: (phase, job id, attempt)."""
    path = tmp_path / "runs.log"
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        phase, job_id, attempt = line.split()
        runs.append((phase, job_id, int(attempt)))
    return runs


class Snapshot:
    """Every job and workflow row of the database, read as another process would."""

    def __init__(self, database: Database) -> None:
        self.jobs = {row["id"]: row for row in database.rows("jobs")}
        self.workflows = {row["id"]: row for row in database.rows("workflows")}

    def record(self, ident: str) -> dict[str, Any]:
        record = self.jobs.get(ident) or self.workflows.get(ident)
        assert record is not None, f"{ident} is in neither table"
        return record

    def count(self, state: str) -> int:
        return sum(1 for job in self.jobs.values() if job["state"] == state)


def result_of(record: dict[str, Any]) -> Any:
    return None if record["result"] is None else json.loads(record["result"])


def expected(kind: str, params: Any) -> Any:
    """The result each kind of submission in ``crash_child.py`` must end with."""
    if kind == "add":
        return params[0] + params[1]
    if kind == "chain":  # add(0, 1) | add(2) | ... | add(n)
        return sum(range(1, params["n"] + 1))
    if kind in ("chord", "replace_in_chain"):  # sum of [add(i, i) for i < n]
        return sum(2 * i for i in range(params["n"]))
    if kind == "fanout":
        return [2 * i for i in range(params["n"])]
    if kind == "group_of_chains":  # [add(i, 1) | add(10) | mul(2) for i < k]
        return [(i + 1 + 10) * 2 for i in range(params["k"])]
    if kind == "chain_group_task":  # add(a, b) | group(add(10), add(20), add(30)) | tsum
        return sum(params["a"] + params["b"] + k for k in (10, 20, 30))
    raise AssertionError(f"unknown kind {kind!r}")


def closure(snapshot: Snapshot, acked: list[str]) -> tuple[set[str], set[str]]:
    """The jobs and workflows that acknowledged work consists of, including replacement workflows."""
    jobs = {ident for ident in acked if ident in snapshot.jobs}
    workflows = {ident for ident in acked if ident in snapshot.workflows}
    while True:
        jobs |= {ident for ident, job in snapshot.jobs.items() if job["workflow_id"] in workflows}
        grown = workflows | {ident for ident, wf in snapshot.workflows.items() if wf["parent_job_id"] in jobs}
        if grown == workflows:
            return jobs, workflows
        workflows = grown


# --- the tests -------------------------------------------------------------------------------------------------


def from_thread(entry: dict[str, Any]) -> bool:
    """Whether the child's plain-thread producer submitted this entry (its x starts at 10,000)."""
    return entry["kind"] == "add" and entry["params"][0] >= 10_000


def test_sigkill_mid_run_loses_nothing_and_reruns_only_unfinished_work(tmp_path: Path, database: Database) -> None:
    child = Child(tmp_path, database, "submit")
    try:
        poll_until(
            lambda: (
                len(read_manifest(tmp_path)) >= 160
                and sum(from_thread(entry) for entry in read_manifest(tmp_path)) >= 20
                and database.count("SUCCESS") >= 50
            ),
            timeout=20,
            what="160 acknowledged submissions (20 of them from a plain thread) and 50 finished jobs",
            child=child,
        )
        child.sigkill()
    finally:
        child.reap()

    manifest = read_manifest(tmp_path)
    acked = [entry["id"] for entry in manifest]
    assert len(set(acked)) == len(acked)
    before = Snapshot(database)
    runs_before = read_runs(tmp_path)
    unfinished = [ident for ident in acked if before.record(ident)["state"] not in TERMINAL]
    # The kill must land mid-way for the test to mean anything: some work done, some not.
    assert before.count("SUCCESS") >= 50
    assert unfinished, "everything acknowledged had finished before the kill; the test proves nothing"
    assert {phase for phase, _, _ in runs_before} == {"submit"}

    resume = Child(tmp_path, database, "resume")
    try:
        resume.wait_ok(timeout=30)  # on PostgreSQL: once the killed engine's leases expired
    finally:
        resume.reap()

    after = Snapshot(database)
    runs = read_runs(tmp_path)

    # Every acknowledged job and workflow succeeded with the right result.
    wrong = {}
    for entry in manifest:
        record = after.record(entry["id"])
        want = expected(entry["kind"], entry["params"])
        if record["state"] != "SUCCESS" or result_of(record) != want:
            wrong[entry["id"]] = (entry["kind"], record["state"], result_of(record), want, record["error"])
    assert not wrong, f"{len(wrong)} acknowledged handles did not end right: {wrong}"

    # ... and so did every job and workflow they are made of (replacements included).
    jobs, workflows = closure(after, acked)
    assert {after.jobs[ident]["state"] for ident in jobs} == {"SUCCESS"}
    assert {after.workflows[ident]["state"] for ident in workflows} == {"SUCCESS"}
    # Each workflow node became exactly one job: nothing was planned twice across the restart.
    nodes = Counter((job["workflow_id"], job["node"]) for job in after.jobs.values() if job["workflow_id"])
    assert [node for node, count in nodes.items() if count > 1] == []

    # What was committed before the kill did not change.
    changed = {}
    for table_before, table_after in ((before.jobs, after.jobs), (before.workflows, after.workflows)):
        for ident, record in table_before.items():
            if record["state"] in TERMINAL and record != table_after[ident]:
                changed[ident] = (record, table_after[ident])
    assert not changed, f"results committed before the kill changed: {changed}"

    # Runs: no attempt ran twice, no job ran more often than its attempts, finished work never re-ran.
    attempts_run: dict[str, list[int]] = defaultdict(list)
    for _, job_id, attempt in runs:
        attempts_run[job_id].append(attempt)
    rerun_after_success = sorted(
        job_id
        for phase, job_id, _ in runs
        if phase == "resume" and before.jobs.get(job_id, {}).get("state") in TERMINAL
    )
    assert rerun_after_success == [], "jobs that had committed their result before the kill ran again"
    for job_id, attempts in attempts_run.items():
        final = after.jobs[job_id]["attempts"]
        assert len(attempts) == len(set(attempts)), f"job {job_id}: an attempt ran twice {attempts}"
        assert max(attempts) <= final, f"job {job_id} ran attempts {attempts} but counted {final}"
    for ident in jobs:
        assert attempts_run.get(ident), f"job {ident} succeeded without running"

    # A job that was running when the process died was re-run once, with its attempt counted.
    was_running = [
        ident for ident, job in before.jobs.items() if job["state"] == "STARTED" and job["lease_owner"] is not None
    ]
    for ident in was_running:
        assert after.jobs[ident]["attempts"] == before.jobs[ident]["attempts"] + 1, after.jobs[ident]
    # A job still queued at the kill ran exactly once, after the restart.
    for ident, job in before.jobs.items():
        if job["state"] in ("PENDING", "RETRY") and job["attempts"] == 0:
            assert attempts_run[ident] == [1], (ident, attempts_run[ident])
            assert after.jobs[ident]["attempts"] == 1


def test_job_running_at_the_kill_is_requeued_or_fails_with_worker_lost(tmp_path: Path, database: Database) -> None:
    child = Child(tmp_path, database, "lost")
    try:

        def both_running() -> bool:
            ids = {entry["id"] for entry in read_manifest(tmp_path)}
            return len(ids) == 2 and ids <= {job_id for _, job_id, _ in read_runs(tmp_path)}

        poll_until(both_running, timeout=20, what="both blocking jobs to start", child=child)
        child.sigkill()
    finally:
        child.reap()

    ids = {entry["kind"]: entry["id"] for entry in read_manifest(tmp_path)}
    before = Snapshot(database)
    for ident in ids.values():
        assert before.jobs[ident]["state"] == "STARTED"
        assert before.jobs[ident]["attempts"] == 1

    resume = Child(tmp_path, database, "resume")
    try:
        resume.wait_ok(timeout=30)  # on PostgreSQL: once the killed engine's leases expired
    finally:
        resume.reap()

    after = Snapshot(database)
    runs = read_runs(tmp_path)

    requeued = after.jobs[ids["block"]]
    assert requeued["state"] == "SUCCESS"
    assert result_of(requeued) == 1, "request.retries in the re-run should be 1"
    assert requeued["attempts"] == 2
    assert [(phase, attempt) for phase, job_id, attempt in runs if job_id == ids["block"]] == [
        ("lost", 1),
        ("resume", 2),
    ]

    lost = after.jobs[ids["block_no_retry"]]
    assert lost["state"] == "FAILURE"
    assert json.loads(lost["error"])["type"] == "WorkerLostError"
    assert lost["attempts"] == 1
    assert [(phase, attempt) for phase, job_id, attempt in runs if job_id == ids["block_no_retry"]] == [("lost", 1)]
