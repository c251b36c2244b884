"""Named queues with real processes on one PostgreSQL database: ``geekblog serve`` with ``GEEKBLOG_QUEUES=default``
leaves the ``ai`` jobs to a ``geekblog worker --queues ai:1``, which runs them one at a time; ``/queues`` and
``/metrics`` show the depth per queue; a malformed list is refused at start with one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from tests.e2e.conftest import GEEKBLOG, ROOT, Service, service_env
from tests.e2e.test_cli import assert_one_line_error
from tests.e2e.test_worker import START_LINE, Worker, all_in, database_url, eventually, services, workers
from tests.support.metrics import value

__all__ = ["database_url", "services", "workers"]  # the fixtures this module uses


def submit_ai(client: httpx.Client, gate: Path) -> str:
    response = client.post("/jobs", json={"task": "e2e.pid", "kwargs": {"gate": str(gate)}, "options": {"queue": "ai"}})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["id"]
    return job_id


def test_a_worker_takes_only_its_queues_at_its_per_queue_concurrency(
    tmp_path: Path, database_url: str, services: list[Service], workers: list[Worker]
) -> None:
    service = Service(
        db_path=tmp_path / "unused.db",
        log_path=tmp_path / "service.log",
        extra_env={"GEEKBLOG_DATABASE_URL": database_url, "GEEKBLOG_QUEUES": "default", "GEEKBLOG_REPLICA": "web-1"},
    )
    services.append(service)
    service.start()
    gate = tmp_path / "gate"
    with service.client() as client:
        ai = [submit_ai(client, gate) for _ in range(2)]
        assert all_in(client, ai, "PENDING"), "serve does not take ai jobs"
        env = service_env(tmp_path / "unused.db", GEEKBLOG_DATABASE_URL=database_url, GEEKBLOG_REPLICA="gpu-1")
        worker = Worker(env=env, log_path=tmp_path / "worker.log", args=("--queues", "ai:1"))
        workers.append(worker)
        worker.start()
        line = worker.wait_for_log(START_LINE)
        assert "queues ai:1" in line, line
        eventually(lambda: sum(job["state"] == "STARTED" for job in all_states(client, ai)) == 1, "one ai job runs")
        assert [job["state"] for job in all_states(client, ai)].count("PENDING") == 1, "ai:1 -- the other one waits"
        queues = {queue["name"]: queue for queue in client.get("/queues").json()}
        assert queues["ai"] == {"name": "ai", "waiting": 1, "served_here": False, "concurrency_here": None}
        assert queues["default"]["served_here"] is True
        assert value(client.get("/metrics").text, "geekblog_shared_queue_depth", queue="ai") == 1
        gate.touch()
        done = eventually(lambda: all_in(client, ai, "SUCCESS"), "the worker runs both, one after the other")
        assert {job["result"] for job in done.values()} == {worker.pid}
        assert {job["queue"] for job in done.values()} == {"ai"}
    assert worker.stop() == 0, worker.log()


def all_states(client: httpx.Client, ids: list[str]) -> list[dict[str, object]]:
    return [client.get(f"/jobs/{job_id}").json() for job_id in ids]


def test_a_malformed_queue_list_is_refused_at_start_with_one_line(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
    env.update(PYTHONPATH=str(ROOT), GEEKBLOG_QUEUES="ai:0", GEEKBLOG_DB_PATH=str(tmp_path / "x.db"))
    for command in ("serve", "worker"):
        refused = subprocess.run(
            [str(GEEKBLOG), command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert_one_line_error(refused, 2, "GEEKBLOG_QUEUES", "at least 1")
