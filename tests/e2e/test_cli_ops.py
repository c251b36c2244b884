"""Issue 15's CLI friction, on the real executable against a real service: the address ``GEEKBLOG_PORT``
names, ``submit``'s call options, ``tasks`` with types and defaults, and the service's job log line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from entrypoints.demo import DEMO_DB_PATH
from entrypoints.settings import Settings
from tests.e2e.conftest import ROOT, Service, wait_for_state
from tests.e2e.test_cli import GEEKBLOG, assert_one_line_error, run_cli


def cli_with_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``geekblog ARGS`` with exactly the ``GEEKBLOG_*`` settings given (no ``GEEKBLOG_URL`` unless given)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
    environ.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run([str(GEEKBLOG), *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=30)


def test_the_client_talks_to_the_port_geekblog_port_names(service: Service) -> None:
    found = cli_with_env("tasks", GEEKBLOG_PORT=str(service.port))
    assert found.returncode == 0, found.stderr
    assert "e2e.add" in found.stdout
    wildcard = cli_with_env("tasks", GEEKBLOG_PORT=str(service.port), GEEKBLOG_HOST="0.0.0.0")
    assert wildcard.returncode == 0, wildcard.stderr
    # GEEKBLOG_URL, when set, still wins
    elsewhere = cli_with_env("tasks", GEEKBLOG_PORT=str(service.port), GEEKBLOG_URL="http://127.0.0.1:9")
    assert_one_line_error(elsewhere, 3, "http://127.0.0.1:9")


def test_submit_takes_eta_max_retries_time_limit_and_routing_key(service: Service) -> None:
    options = ["--eta", "2999-01-01T00:00:00Z", "--max-retries", "0", "--routing-key", "ai", "--json"]
    submitted = run_cli("submit", "e2e.add", "[1, 2]", *options, url=service.url)
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["due_at"].startswith("2999-01-01T00:00:00")
    assert (job["max_retries"], job["routing_key"], job["queue"]) == (0, "ai", "ai")

    limited = run_cli("submit", "e2e.forever", "--time-limit", "0.3", "--max-retries", "0", "--wait", url=service.url)
    assert limited.returncode == 1, (limited.stdout, limited.stderr)
    assert "TimeLimitExceeded" in limited.stdout + limited.stderr

    bad = run_cli("submit", "e2e.add", "[1, 2]", "--eta", "tomorrow", url=service.url)
    assert bad.returncode == 2 and "--eta" in bad.stderr and "Traceback" not in bad.stderr


def test_tasks_shows_types_and_defaults(service: Service) -> None:
    listed = run_cli("tasks", url=service.url)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "x: int, y: int" in rows["e2e.add"]
    assert "count: int, pause: float = 0.05" in rows["e2e.steps"]
    assert 'message: str = "boom"' in rows["e2e.fail"]
    machine = {task["name"]: task for task in json.loads(run_cli("tasks", "--json", url=service.url).stdout)}
    assert machine["e2e.steps"]["signature"] == [
        {"name": "count", "kind": "positional", "type": "int", "required": True, "default": None},
        {"name": "pause", "kind": "positional", "type": "float", "required": False, "default": 0.05},
    ]


def test_a_failing_job_is_in_the_service_log(service: Service) -> None:
    with service.client() as client:
        job = client.post("/jobs", json={"task": "e2e.fail", "options": {"max_retries": 0}}).json()
        wait_for_state(client, f"/jobs/{job['id']}", {"FAILURE"})
    log = service.log()
    [line] = [line for line in log.splitlines() if "geekblog.jobs: job failure" in line and job["id"] in line]
    assert f"job failure: task=e2e.fail job_id={job['id']} state=FAILURE" in line
    assert "attempt=1 error=ValueError: boom" in line
    # development mode logs at DEBUG: the traceback follows
    assert f"geekblog.jobs: job {job['id']} traceback" in log and "raise ValueError(message)" in log


def test_make_demo_has_a_database_of_its_own() -> None:
    assert Path(DEMO_DB_PATH).resolve() != Path(Settings().db_path).resolve()
