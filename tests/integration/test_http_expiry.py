"""``expires`` over HTTP (``POST /jobs`` options and every task node of ``POST /workflows``), on the memory and
SQLite repositories: stored with the job, shown by ``GET /jobs/{id}``, and a job not started by then ends
REVOKED ("expired") without running."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from tests.integration import compat_tasks
from tests.integration.test_http_api import settings_for, settled


@pytest.fixture
async def client(db_path: str | None) -> AsyncIterator[AsyncTestClient[Litestar]]:
    compat_tasks.CALLS.clear()
    app = create_app(Container(settings=settings_for(db_path, task_modules=("tests.integration.compat_tasks",))))
    async with AsyncTestClient(app) as test_client:
        yield test_client


def when(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


class TestExpiresOnJobs:
    async def test_seconds_are_counted_from_submission_and_shown(self, client: AsyncTestClient[Litestar]) -> None:
        body = {"task": "compat.add", "args": [1, 2], "options": {"countdown": 60, "expires": 30}}
        response = await client.post("/jobs", json=body)
        assert response.status_code == 202
        job = response.json()
        assert when(job["expires"]) - when(job["created_at"]) == pytest.approx(30, abs=0.01)
        assert (await client.get(f"/jobs/{job['id']}")).json()["expires"] == job["expires"]

    async def test_a_datetime_is_taken_as_is_and_a_job_without_one_shows_null(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        body = {"task": "compat.add", "args": [1, 2], "options": {"countdown": 60, "expires": "2031-01-01T00:00:00"}}
        job = (await client.post("/jobs", json=body)).json()
        assert job["expires"] == "2031-01-01T00:00:00+00:00"  # UTC when no offset is given
        plain = (await client.post("/jobs", json={"task": "compat.add", "args": [1, 2]})).json()
        assert plain["expires"] is None

    async def test_a_job_not_started_in_time_ends_revoked_as_expired_and_never_runs(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        body = {"task": "compat.add", "args": [4, 4], "options": {"countdown": 0.3, "expires": 0.05}}
        job = (await client.post("/jobs", json=body)).json()
        done = await settled(client, f"/jobs/{job['id']}", {"SUCCESS", "FAILURE", "REVOKED"})
        assert done["state"] == "REVOKED"
        assert done["error"]["type"] == "TaskRevokedError" and done["error"]["message"].endswith("expired")
        past = {"task": "compat.add", "args": [5, 5], "options": {"expires": "2020-01-01T00:00:00Z"}}
        gone = (await client.post("/jobs", json=past)).json()
        assert (await settled(client, f"/jobs/{gone['id']}", {"SUCCESS", "REVOKED"}))["state"] == "REVOKED"
        assert compat_tasks.CALLS == []

    @pytest.mark.parametrize(
        ("expires", "status", "detail"),
        [
            (-1, 422, "expires must be a number of seconds from 0 to 316224000 or an ISO 8601 time"),
            ("tomorrow", 422, "expires must be a number of seconds"),
            (True, 422, "expires must be a number of seconds"),
            (10 * 366 * 24 * 3600.0 + 1, 422, "expires must be a number of seconds"),
            ([], 422, "expires must be a number of seconds"),
            ("1969-12-31T00:00:00Z", 422, "expires must be between 1970 and 9999"),
        ],
    )
    async def test_a_malformed_expiry_is_refused_naming_it(
        self, client: AsyncTestClient[Litestar], expires: Any, status: int, detail: str
    ) -> None:
        response = await client.post(
            "/jobs", json={"task": "compat.add", "args": [1, 2], "options": {"expires": expires}}
        )
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
        assert detail in response.json()["detail"]
        assert response.json()["type"] in (
            "urn:geekblog:problem:invalid-call-option",
            "urn:geekblog:problem:invalid-schedule",
        )


class TestExpiresOnWorkflows:
    async def test_a_step_with_expires_keeps_it_and_expires_unrun(self, client: AsyncTestClient[Litestar]) -> None:
        canvas = {
            "chain": [
                {"task": "compat.add", "args": [1, 1], "options": {"countdown": 0.3}},
                {"task": "compat.add", "args": [1], "options": {"expires": 0.05}},
            ]
        }
        response = await client.post("/workflows", json={"canvas": canvas})
        assert response.status_code == 202
        flow = response.json()
        shown = flow["canvas"]["chain"][1]["options"]["expires"]
        assert when(shown) - when(flow["created_at"]) == pytest.approx(0.05, abs=0.01)
        done = await settled(client, f"/workflows/{flow['id']}", {"SUCCESS", "FAILURE", "REVOKED"})
        assert done["state"] == "REVOKED"
        second = (await client.get(f"/jobs/{done['nodes'][1]['job_id']}")).json()
        assert second["state"] == "REVOKED" and second["error"]["message"].endswith("expired")
        assert second["expires"] == shown
        assert compat_tasks.CALLS == [("add", (1, 1))]

    async def test_a_malformed_step_expiry_is_a_422_naming_the_node(self, client: AsyncTestClient[Litestar]) -> None:
        canvas = {"chain": [{"task": "compat.add", "args": [1, 1], "options": {"expires": "soon"}}]}
        response = await client.post("/workflows", json={"canvas": canvas})
        assert response.status_code == 422
        assert "canvas.chain[0].options.expires" in response.json()["detail"]

    @pytest.mark.parametrize("expires", [-1, True, "soon", 10 * 366 * 24 * 3600.0 + 1])
    async def test_every_malformed_step_expiry_is_an_invalid_call_option(
        self, client: AsyncTestClient[Litestar], expires: Any
    ) -> None:
        canvas = {"group": [{"task": "compat.add", "args": [1, 1], "options": {"expires": expires}}]}
        response = await client.post("/workflows", json={"canvas": canvas})
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["type"] == "urn:geekblog:problem:invalid-call-option"
        assert problem["detail"].startswith("canvas.group[0].options.expires: expires must be a number of seconds")


class TestExpiresOnSchedules:
    @pytest.mark.parametrize("expires", [-1, True, "tomorrow", "30", 10 * 366 * 24 * 3600.0 + 1])
    async def test_a_malformed_expiry_is_a_422_naming_it(self, client: AsyncTestClient[Litestar], expires: Any) -> None:
        body = {"name": "s", "task": "compat.add", "args": [1, 2], "every": 60, "options": {"expires": expires}}
        response = await client.post("/schedules", json=body)
        assert response.status_code == 422, response.text
        assert "expires must be a number of seconds after the tick" in response.json()["detail"]
        assert (await client.get("/schedules")).json()["items"] == []

    async def test_a_number_of_seconds_is_accepted(self, client: AsyncTestClient[Litestar]) -> None:
        body = {"name": "s", "task": "compat.add", "args": [1, 2], "every": 60, "options": {"expires": 30}}
        response = await client.post("/schedules", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["options"] == {"expires": 30}
