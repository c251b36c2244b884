"""The HTTP API through Litestar's AsyncTestClient, on each repository (memory and SQLite)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.support.metrics import value


def settings_for(db_path: str | None, **changes: Any) -> Settings:
    if db_path is None:
        return Settings(persistence="memory", **changes)
    return Settings(db_path=db_path, persistence="sqlite", **changes)


@pytest.fixture
def app(db_path: str | None) -> Litestar:
    return create_app(Container(settings=settings_for(db_path, task_modules=("tests.integration.compat_tasks",))))


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def settled(client: AsyncTestClient[Litestar], path: str, states: set[str], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get(path)).json()
        if body["state"] in states:
            return body
        assert time.monotonic() < deadline, f"{path} stayed {body['state']}"
        await asyncio.sleep(0.01)


class TestSubmitJob:
    async def test_the_job_comes_back_with_its_location_and_runs(self, client: AsyncTestClient[Litestar]) -> None:
        response = await client.post("/jobs", json={"task": "geekblog.add", "args": [2, 3]})
        assert response.status_code == 202
        job = response.json()
        assert response.headers["location"] == f"/jobs/{job['id']}"
        assert job["state"] == "PENDING" and job["args"] == [2, 3] and job["error"] is None
        done = await settled(client, f"/jobs/{job['id']}", {"SUCCESS"})
        assert done["result"] == 5

    async def test_queue_and_routing_key_are_stored_and_shown(self, client: AsyncTestClient[Litestar]) -> None:
        options = {"queue": "reports", "routing_key": "reports.daily"}
        job = (await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1], "options": options})).json()
        shown = (await client.get(f"/jobs/{job['id']}")).json()
        assert (shown["queue"], shown["routing_key"], shown["parent_id"]) == ("reports", "reports.daily", None)
        canvas = {"chain": [{"task": "geekblog.add", "args": [1, 1], "options": {"queue": "q1"}}]}
        flow = (await client.post("/workflows", json={"canvas": canvas})).json()
        assert flow["canvas"]["chain"][0]["options"] == {"queue": "q1"}
        bad = await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1], "options": {"queue": "a b"}})
        assert bad.status_code == 422, "issue 14: a malformed queue control is a 422"

    async def test_countdown_and_eta_set_when_it_is_due(self, client: AsyncTestClient[Litestar]) -> None:
        later = (
            await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1], "options": {"countdown": 60}})
        ).json()
        assert later["due_at"] > later["created_at"]
        eta = "2031-01-01T00:00:00Z"
        at = (await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1], "options": {"eta": eta}})).json()
        assert at["due_at"].startswith("2031-01-01T00:00:00")

    async def test_a_time_limit_option_fails_a_slow_job(self, client: AsyncTestClient[Litestar]) -> None:
        job = (
            await client.post("/jobs", json={"task": "geekblog.sleep", "args": [5], "options": {"time_limit": 0.1}})
        ).json()
        failed = await settled(client, f"/jobs/{job['id']}", {"FAILURE"})
        assert failed["error"]["type"] == "TimeLimitExceeded"

    @pytest.mark.parametrize(
        ("body", "status", "detail"),
        [
            ({"task": "nope"}, 422, "'nope'"),
            ({"task": ""}, 400, "task"),
            ({"task": "geekblog.add", "args": {"x": 1}}, 400, "args"),
            ({"task": "geekblog.add", "options": {"priority": "high"}}, 400, "priority"),
            ({"task": "geekblog.add", "options": {"time_limit": 0}}, 400, "time_limit"),
            ({"task": "geekblog.add", "options": {"later": True}}, 400, "later"),
            ({"task": "geekblog.add", "extra": 1}, 400, "extra"),
            ({"task": "geekblog.add", "args": [1, 2, 3]}, 422, "geekblog.add(x: float, y: float)"),
            ({"task": "geekblog.add", "kwargs": {"z": 1}}, 422, "missing a required argument"),
        ],
    )
    async def test_bad_bodies_are_problems_naming_what_is_wrong(
        self, client: AsyncTestClient[Litestar], body: dict[str, Any], status: int, detail: str
    ) -> None:
        response = await client.post("/jobs", json=body)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]


class TestListJobs:
    async def test_pages_newest_first_without_gaps_or_repeats(self, client: AsyncTestClient[Litestar]) -> None:
        ids = [
            (
                await client.post("/jobs", json={"task": "compat.add", "args": [i, 0], "options": {"countdown": 60}})
            ).json()["id"]
            for i in range(7)
        ]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "task": "compat.add"}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/jobs", params=params)).json()
            seen += [job["id"] for job in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))

    async def test_filters_by_state(self, client: AsyncTestClient[Litestar]) -> None:
        queued = (
            await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1], "options": {"countdown": 60}})
        ).json()
        items = (await client.get("/jobs", params={"state": "PENDING"})).json()["items"]
        assert [job["id"] for job in items] == [queued["id"]]
        assert (await client.get("/jobs", params={"state": "SUCCESS"})).json()["items"] == []

    @pytest.mark.parametrize("query", ["state=DONE", "limit=0", "limit=501", "cursor=abc", "limit=x"])
    async def test_bad_queries_are_400(self, client: AsyncTestClient[Litestar], query: str) -> None:
        response = await client.get(f"/jobs?{query}")
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"


class TestControl:
    async def test_cancel_a_queued_job_then_retry_it(self, client: AsyncTestClient[Litestar]) -> None:
        job = (
            await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1], "options": {"countdown": 60}})
        ).json()
        cancelled = await client.post(f"/jobs/{job['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "REVOKED"
        retried = await client.post(f"/jobs/{job['id']}/retry")
        assert retried.status_code == 202 and retried.json()["state"] == "PENDING"
        done = await settled(client, f"/jobs/{job['id']}", {"SUCCESS"})
        assert done["result"] == 2

    async def test_unknown_ids_are_404(self, client: AsyncTestClient[Litestar]) -> None:
        for method, path in [
            ("GET", "/jobs/x"),
            ("POST", "/jobs/x/cancel"),
            ("POST", "/jobs/x/retry"),
            ("GET", "/workflows/x"),
            ("POST", "/workflows/x/cancel"),
            ("GET", "/jobs/x/events"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 404, path
            assert response.json()["title"] == "Not found"


class TestWorkflows:
    async def test_a_chord_runs_and_lists_its_nodes(self, client: AsyncTestClient[Litestar]) -> None:
        canvas = {
            "chord": {
                "header": [{"task": "geekblog.add", "args": [i, i]} for i in range(4)],
                "body": {"task": "geekblog.sum"},
            }
        }
        response = await client.post("/workflows", json={"canvas": canvas})
        assert response.status_code == 202
        created = response.json()
        assert response.headers["location"] == f"/workflows/{created['id']}"
        assert len(created["nodes"]) == 4, "the header is created at once, the body later"
        assert created["canvas"] == {
            "chord": {
                "header": [{"task": "geekblog.add", "args": [i, i], "kwargs": {}} for i in range(4)],
                "body": {"task": "geekblog.sum", "args": [], "kwargs": {}},
            }
        }
        done = await settled(client, f"/workflows/{created['id']}", {"SUCCESS"})
        assert done["result"] == 12 and len(done["nodes"]) == 5

    async def test_cancel_a_workflow(self, client: AsyncTestClient[Litestar]) -> None:
        canvas = {
            "chain": [
                {"task": "geekblog.add", "args": [1, 1], "options": {"countdown": 60}},
                {"task": "geekblog.add", "args": [1]},
            ]
        }
        workflow = (await client.post("/workflows", json={"canvas": canvas})).json()
        cancelled = await client.post(f"/workflows/{workflow['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "REVOKED"
        assert all(node["state"] == "REVOKED" for node in cancelled.json()["nodes"])
        assert (await client.post(f"/workflows/{workflow['id']}/cancel")).status_code == 409

    @pytest.mark.parametrize(
        ("canvas", "detail"),
        [
            ({"chain": []}, "at least one step"),
            ({"task": "geekblog.add", "chain": []}, "exactly one of"),
            ({"group": [{"task": 5}]}, "canvas.group[0].task"),
            ({"chord": {"header": []}}, "canvas.chord"),
            ({"group": [{"task": "geekblog.add", "bogus": 1}]}, "bogus"),
            ({"group": [{"task": "geekblog.add"}] * 10_001}, "more than"),
            ({"task": "geekblog.add", "options": {"countdown": -5}}, "countdown"),
            ({"task": "unknown.task"}, "'unknown.task'"),
        ],
    )
    async def test_bad_canvases_are_422_naming_the_node(
        self, client: AsyncTestClient[Litestar], canvas: dict[str, Any], detail: str
    ) -> None:
        response = await client.post("/workflows", json={"canvas": canvas})
        assert response.status_code == 422, response.text
        assert detail in response.json()["detail"]

    async def test_an_over_deep_canvas_is_refused_before_any_recursion(self, client: AsyncTestClient[Litestar]) -> None:
        deep: dict[str, Any] = {"task": "geekblog.add"}
        for _ in range(33):
            deep = {"group": [deep]}
        response = await client.post("/workflows", json={"canvas": deep})
        assert response.status_code == 422
        assert "deeper than 32" in response.json()["detail"]


class TestEvents:
    async def test_a_finished_jobs_stream_sends_its_state_and_ends(self, client: AsyncTestClient[Litestar]) -> None:
        job = (await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2]})).json()
        await settled(client, f"/jobs/{job['id']}", {"SUCCESS"})
        response = await client.get(f"/jobs/{job['id']}/events")
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [frame for frame in response.text.split("\r\n\r\n") if frame]
        assert len(frames) == 1 and re.match(r"id: [0-9a-f]+-[0-9]+\r\nevent: state\r\ndata: ", frames[0]), frames
        assert '"state":"SUCCESS"' in frames[0]


class TestSystem:
    async def test_tasks_lists_names_parameters_and_options(self, client: AsyncTestClient[Litestar]) -> None:
        tasks = {task["name"]: task for task in (await client.get("/tasks")).json()}
        assert tasks["geekblog.add"]["parameters"] == ["x", "y"]
        assert tasks["compat.flaky"]["options"]["autoretry_for"] == ["ConnectionError"]
        assert tasks["compat.progress"]["parameters"] == ["steps", "gate"], "a bound task's self is not a parameter"

    async def test_metrics_count_by_task_and_state(self, client: AsyncTestClient[Litestar]) -> None:
        job = (await client.post("/jobs", json={"task": "geekblog.fail", "options": {"max_retries": 0}})).json()
        await settled(client, f"/jobs/{job['id']}", {"FAILURE"})
        assert (await client.get("/jobs/no-such-job")).status_code == 404  # an exception handler's answer
        assert (await client.get("/no/such/route/42")).status_code == 404
        assert (await client.request("BREW", "/health")).status_code == 405
        assert (await client.head("/health")).status_code == 200
        text = (await client.get("/metrics")).text
        assert value(text, "geekblog_http_requests_total", method="GET", route="/jobs/{job_id}", status="404") == 1
        assert value(text, "geekblog_http_requests_total", method="GET", route="(unmatched)", status="404") == 1
        assert value(text, "geekblog_http_requests_total", method="other", route="(unmatched)", status="405") == 1
        assert value(text, "geekblog_http_requests_total", method="HEAD", route="/health", status="200") == 1
        assert value(text, "geekblog_http_request_duration_seconds_count", method="GET", route="/jobs/{job_id}")
        assert value(text, "geekblog_jobs_submitted_total", task="geekblog.fail") == 1
        assert value(text, "geekblog_jobs_finished_total", task="geekblog.fail", state="FAILURE") == 1
        assert value(text, "geekblog_jobs_finished_total", task="geekblog.fail", state="SUCCESS") == 0
        assert value(text, "geekblog_jobs_finished_total", task="geekblog.sleep", state="FAILURE") == 0, "never run"
        assert value(text, "geekblog_job_duration_seconds_count", task="geekblog.fail") == 1
        assert value(text, "geekblog_job_queue_wait_seconds_count", task="geekblog.fail", queue="default") == 1
        assert value(text, "geekblog_jobs_running") == 0
        assert value(text, "geekblog_http_requests_total", method="POST", route="/jobs", status="202") == 1
        assert value(text, "geekblog_http_requests_total", method="GET", route="/jobs/{job_id}", status="200")

    async def test_ready_is_503_until_the_engine_runs(self, app: Litestar) -> None:
        unstarted = AsyncTestClient(app)
        response = await unstarted.get("/ready")
        assert response.status_code == 503
        async with AsyncTestClient(app) as started:
            assert (await started.get("/ready")).status_code == 200


class TestLimits:
    async def test_bodies_over_the_limit_are_413(self, db_path: str | None, tmp_path: Path) -> None:
        app = create_app(Container(settings=settings_for(db_path, max_body_bytes=2048)))
        async with AsyncTestClient(app) as client:
            response = await client.post("/jobs", json={"task": "geekblog.echo", "args": ["x" * 4096]})
            assert response.status_code == 413
            assert response.headers["content-type"] == "application/problem+json"
            assert (await client.post("/jobs", json={"task": "geekblog.echo", "args": ["x"]})).status_code == 202
