"""The real service: ``geekblog serve`` under uvicorn on a free port, driven over HTTP."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GEEKBLOG, Service, service_env, wait_for_state
from tests.support.metrics import value


def sse(response: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event, data) pairs of a server-sent event stream, as they arrive."""
    event, data = "message", []
    for line in response.iter_lines():
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


class TestJobs:
    def test_submit_and_await_a_job(self, service: Service) -> None:
        with service.client() as client:
            response = client.post("/jobs", json={"task": "e2e.add", "args": [20, 22]})
            assert response.status_code == 202
            job = response.json()
            assert response.headers["location"] == f"/jobs/{job['id']}"
            done = wait_for_state(client, f"/jobs/{job['id']}", {"SUCCESS", "FAILURE"})
            assert done["result"] == 42
            assert done["attempts"] == 1
            assert done["started_at"] and done["finished_at"]

    def test_progress_events_arrive_in_order_and_the_stream_closes(self, service: Service) -> None:
        with service.client() as client:
            job = client.post("/jobs", json={"task": "e2e.steps", "args": [5, 0.05]}).json()
            with client.stream("GET", f"/jobs/{job['id']}/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                events = list(sse(response))
        first_event, first = events[0]
        assert first_event == "state" and first["id"] == job["id"]
        progress = [data["progress"]["meta"]["done"] for event, data in events if event == "progress"]
        assert progress == [1, 2, 3, 4, 5]
        assert events[-1][1]["state"] == "SUCCESS" and events[-1][1]["result"] == 5

    def test_cancel_a_running_job(self, service: Service) -> None:
        with service.client() as client:
            job = client.post("/jobs", json={"task": "e2e.forever"}).json()
            wait_for_state(client, f"/jobs/{job['id']}", {"STARTED"})
            cancelled = client.post(f"/jobs/{job['id']}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "REVOKED"
            again = client.post(f"/jobs/{job['id']}/cancel")
            assert again.status_code == 409
            assert again.headers["content-type"] == "application/problem+json"

    def test_retry_a_failed_job(self, service: Service) -> None:
        with service.client() as client:
            job = client.post(
                "/jobs", json={"task": "e2e.fail", "args": ["nope"], "options": {"max_retries": 0}}
            ).json()
            failed = wait_for_state(client, f"/jobs/{job['id']}", {"FAILURE"})
            assert failed["error"]["type"] == "ValueError" and failed["error"]["message"] == "nope"
            retried = client.post(f"/jobs/{job['id']}/retry")
            assert retried.status_code == 202 and retried.json()["state"] == "PENDING"
            again = wait_for_state(client, f"/jobs/{job['id']}", {"FAILURE"})
            assert again["attempts"] == 1
            assert client.post(f"/jobs/{job['id']}/retry").status_code == 202
            ok = client.post("/jobs", json={"task": "e2e.add", "args": [1, 1]}).json()
            wait_for_state(client, f"/jobs/{ok['id']}", {"SUCCESS"})
            assert client.post(f"/jobs/{ok['id']}/retry").status_code == 409


class TestWorkflows:
    def test_a_nested_workflow_gives_its_result(self, service: Service) -> None:
        canvas = {
            "chain": [
                {"task": "e2e.add", "args": [1, 1]},
                {
                    "chord": {
                        "header": [{"task": "e2e.add", "args": [10]}, {"task": "e2e.add", "args": [20]}],
                        "body": {"task": "e2e.total"},
                    }
                },
                {"group": [{"task": "e2e.add", "args": [1]}, {"task": "e2e.add", "args": [2]}]},
            ]
        }
        with service.client() as client:
            response = client.post("/workflows", json={"canvas": canvas})
            assert response.status_code == 202
            workflow = response.json()
            done = wait_for_state(client, f"/workflows/{workflow['id']}", {"SUCCESS", "FAILURE"})
            assert done["result"] == [35, 36]
            nodes = done["nodes"]
            assert len(nodes) == 6 and all(node["state"] == "SUCCESS" for node in nodes)
            listed = client.get("/jobs", params={"workflow_id": workflow["id"]}).json()["items"]
            assert {job["id"] for job in listed} == {node["job_id"] for node in nodes}

    def test_workflow_events_show_the_steps_and_close_at_the_end(self, service: Service) -> None:
        canvas = {"chain": [{"task": "e2e.steps", "args": [2, 0.02]}, {"task": "e2e.add", "args": [3]}]}
        with service.client() as client:
            workflow = client.post("/workflows", json={"canvas": canvas}).json()
            with client.stream("GET", f"/workflows/{workflow['id']}/events") as response:
                events = list(sse(response))
        assert events[0][1]["id"] == workflow["id"]
        states = [(data.get("task"), data["state"]) for _, data in events[1:]]
        assert ("e2e.steps", "PROGRESS") in states
        assert ("e2e.add", "SUCCESS") in states
        assert events[-1][1]["id"] == workflow["id"] and events[-1][1]["state"] == "SUCCESS"
        assert events[-1][1]["result"] == 5


class TestRestart:
    def test_queued_jobs_finish_after_a_restart(self, service: Service) -> None:
        with service.client() as client:
            scheduled = [
                client.post("/jobs", json={"task": "e2e.add", "args": [i, i], "options": {"countdown": 1.5}}).json()
                for i in range(5)
            ]
        service.restart()
        with service.client() as client:
            for i, job in enumerate(scheduled):
                done = wait_for_state(client, f"/jobs/{job['id']}", {"SUCCESS"})
                assert done["result"] == 2 * i

    def test_a_job_running_at_sigterm_is_recovered_by_the_next_start(self, service: Service) -> None:
        with service.client() as client:
            job = client.post("/jobs", json={"task": "e2e.steps", "args": [30, 0.1]}).json()
            wait_for_state(client, f"/jobs/{job['id']}", {"STARTED", "PROGRESS"})
        assert service.stop(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
        assert "left 1 running job(s) to recovery at the next start" in service.log()
        assert "Application shutdown complete" in service.log()
        service.start()
        with service.client() as client:
            done = wait_for_state(client, f"/jobs/{job['id']}", {"SUCCESS"}, timeout=15)
            assert done["attempts"] == 2


class TestAuth:
    def test_without_a_token_configured_no_header_is_needed(self, service: Service) -> None:
        assert httpx.get(f"{service.url}/tasks").status_code == 200

    def test_with_a_token_every_route_but_health_needs_it(self, make_service: Callable[..., Service]) -> None:
        service = make_service(GEEKBLOG_API_TOKEN="s3cret-token")
        assert httpx.get(f"{service.url}/health").status_code == 200
        for method, path in [
            ("GET", "/tasks"),
            ("POST", "/jobs"),
            ("GET", "/metrics"),
            ("GET", "/schema/openapi.json"),
        ]:
            response = httpx.request(method, f"{service.url}{path}")
            assert response.status_code == 401, path
            assert response.headers["content-type"] == "application/problem+json"
        wrong = httpx.get(f"{service.url}/tasks", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401
        with service.client() as client:
            assert client.get("/tasks").status_code == 200
            assert client.post("/jobs", json={"task": "e2e.add", "args": [1, 2]}).status_code == 202


class TestBadInput:
    def test_bad_bodies_are_refused_as_problem_json(self, service: Service) -> None:
        deep: dict[str, Any] = {"task": "e2e.add", "args": [1, 1]}
        for _ in range(100):
            deep = {"chain": [deep]}
        cases: list[tuple[str, bytes, int]] = [
            ("/jobs", b'{"task": 42}', 400),
            ("/jobs", b'{"task": "e2e.add", "args": "not a list"}', 400),
            ("/jobs", b'{"task": "no.such.task"}', 422),
            ("/jobs", b"{not json", 400),
            ("/jobs", b'{"task": "e2e.add", "options": {"countdown": -1}}', 400),
            ("/jobs", b'{"task": "e2e.add", "args": ["' + b"x" * 2_000_000 + b'"]}', 413),
            ("/workflows", json.dumps({"canvas": deep}).encode(), 422),
            ("/workflows", b'{"canvas": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", 400),
            ("/workflows", b'{"canvas": {"chain": []}}', 422),
            ("/workflows", b'{"canvas": {"group": [{"task": "no.such.task"}]}}', 422),
        ]
        with service.client() as client:
            for path, body, status in cases:
                response = client.post(path, content=body, headers={"content-type": "application/json"})
                assert response.status_code == status, (path, body[:60], response.text[:200])
                assert response.headers["content-type"] == "application/problem+json"
                problem = response.json()
                assert problem["status"] == status and problem["title"] and problem["detail"]
                assert "Traceback" not in response.text
            unknown = client.post("/jobs", json={"task": "no.such.task"}).json()
            assert "no.such.task" in unknown["detail"]
            assert client.get("/jobs/not-an-id").status_code == 404
            assert client.get("/health").status_code == 200, "the service survived all of it"


class TestSystem:
    def test_ready_health_metrics_tasks_and_schema(self, service: Service) -> None:
        with service.client() as client:
            assert client.get("/ready").json()["status"] == "ok"
            job = client.post("/jobs", json={"task": "e2e.add", "args": [1, 2]}).json()
            wait_for_state(client, f"/jobs/{job['id']}", {"SUCCESS"})
            metrics = client.get("/metrics").text
            assert value(metrics, "geekblog_jobs_finished_total", task="e2e.add", state="SUCCESS") == 1
            assert value(metrics, "geekblog_jobs_queued") == 0
            assert value(metrics, "process_resident_memory_bytes"), "process metrics are served"
            names = {task["name"] for task in client.get("/tasks").json()}
            assert {"e2e.add", "geekblog.add"} <= names
            paths = client.get("/schema/openapi.json").json()["paths"]
            assert {"/jobs", "/jobs/{job_id}", "/workflows", "/health", "/ready", "/metrics", "/tasks"} <= set(paths)


class TestStartup:
    @pytest.mark.parametrize(
        ("env", "code", "names"),
        [
            ({"GEEKBLOG_MAX_CONCURRENT_TASKS": "many"}, 2, "GEEKBLOG_MAX_CONCURRENT_TASKS"),
            ({"GEEKBLOG_PERSISTENCE": "redis"}, 2, "GEEKBLOG_PERSISTENCE"),
            ({"GEEKBLOG_TASK_MODULES": "no_such_module_here"}, 2, "no_such_module_here"),
            ({"GEEKBLOG_DB_PATH": "NOT_A_DB"}, 1, "is not a SQLite database"),
        ],
    )
    def test_a_bad_setting_stops_the_start_with_one_line(
        self, tmp_path: Path, env: dict[str, str], code: int, names: str
    ) -> None:
        if env.get("GEEKBLOG_DB_PATH") == "NOT_A_DB":
            garbage = tmp_path / "garbage.db"
            garbage.write_text("this is not a database\n" * 100)
            env = {"GEEKBLOG_DB_PATH": str(garbage)}
        process = subprocess.run(
            [str(GEEKBLOG), "serve", "--port", "1"],
            env={**service_env(tmp_path / "unused.db"), **env},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert process.returncode == code
        lines = process.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("geekblog: ") and names in lines[0], process.stderr
        assert "Traceback" not in process.stderr + process.stdout


class TestStorageStartup:
    def test_a_newer_schema_or_an_unusable_path_stops_the_start_with_one_line(self, tmp_path: Path) -> None:
        newer = tmp_path / "newer.db"
        with contextlib.closing(sqlite3.connect(newer)) as connection:
            connection.execute("PRAGMA user_version = 99")
        not_a_dir = tmp_path / "file"
        not_a_dir.write_text("x")
        for path, needle in [(newer, "newer than this engine's"), (not_a_dir / "x.db", "cannot")]:
            process = subprocess.run(
                [str(GEEKBLOG), "serve", "--port", "1"],
                env=service_env(path),
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert process.returncode == 1, process.stderr
            lines = process.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("geekblog: ") and needle in lines[0], process.stderr


class TestBackupAndPurge:
    def test_an_online_backup_restores_into_a_working_service(
        self, make_service: Callable[..., Service], tmp_path: Path
    ) -> None:
        service = make_service()
        with service.client() as client:
            done = [client.post("/jobs", json={"task": "e2e.add", "args": [i, i]}).json()["id"] for i in range(20)]
            for job_id in done:
                wait_for_state(client, f"/jobs/{job_id}", {"SUCCESS"})
            queued = client.post("/jobs", json={"task": "e2e.add", "args": [5, 5], "options": {"countdown": 2}}).json()
            copy = tmp_path / "backup.db"
            backup = subprocess.run(
                [str(GEEKBLOG), "backup", str(copy), "--db", str(service.db_path)],
                env=service.env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert backup.returncode == 0, backup.stderr
            assert "21 jobs" in backup.stdout
            assert client.post("/jobs", json={"task": "e2e.add", "args": [1, 1]}).status_code == 202, "still serving"
        service.stop()
        restored = Service(db_path=copy, log_path=tmp_path / "restored.log")
        restored.start()
        try:
            with restored.client() as client:
                assert client.get(f"/jobs/{done[0]}").json()["result"] == 0
                assert wait_for_state(client, f"/jobs/{queued['id']}", {"SUCCESS"})["result"] == 10
                fresh = client.post("/jobs", json={"task": "e2e.add", "args": [2, 3]}).json()
                assert wait_for_state(client, f"/jobs/{fresh['id']}", {"SUCCESS"})["result"] == 5
        finally:
            restored.stop()

    def test_purge_deletes_old_finished_jobs_while_the_service_runs(self, service: Service) -> None:
        with service.client() as client:
            old = client.post("/jobs", json={"task": "e2e.add", "args": [1, 1]}).json()
            wait_for_state(client, f"/jobs/{old['id']}", {"SUCCESS"})
            waiting = client.post(
                "/jobs", json={"task": "e2e.add", "args": [1, 1], "options": {"countdown": 60}}
            ).json()
            purge = subprocess.run(
                [str(GEEKBLOG), "purge", "--older-than", "0", "--db", str(service.db_path)],
                env=service.env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert purge.returncode == 0, purge.stderr
            assert purge.stdout.startswith("purged 1 job(s)")
            assert client.get(f"/jobs/{old['id']}").status_code == 404
            assert client.get(f"/jobs/{waiting['id']}").json()["state"] == "PENDING"
