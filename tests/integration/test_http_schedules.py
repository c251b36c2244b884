"""``/schedules`` through Litestar's AsyncTestClient (memory and SQLite): create, list, read with next runs and
last jobs, pause/resume/change, delete, run now; 422/404/409; jobs carry ``schedule``/``tick``; GET /jobs?schedule=."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings


@pytest.fixture
def app(db_path: str | None) -> Litestar:
    tasks = ("tests.integration.compat_tasks",)
    if db_path is None:
        settings = Settings(persistence="memory", task_modules=tasks)
    else:
        settings = Settings(db_path=db_path, persistence="sqlite", task_modules=tasks)
    return create_app(Container(settings=settings))


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


NIGHTLY = {"name": "nightly", "task": "compat.add", "args": [1, 2], "cron": "0 3 * * *", "timezone": "Europe/Paris"}


async def test_create_read_list_and_delete(client: AsyncTestClient[Litestar]) -> None:
    created = await client.post("/schedules", json=NIGHTLY)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/schedules/nightly"
    body = created.json()
    assert body["cron"] == "0 3 * * *" and body["every"] is None and body["enabled"] and body["missed"] == "skip"
    assert len(body["next_runs"]) == 5 and body["next_run"] == body["next_runs"][0]
    assert body["next_runs"][0].endswith(("T01:00:00+00:00", "T02:00:00+00:00"))  # 03:00 in Paris
    listed = (await client.get("/schedules")).json()
    assert [item["name"] for item in listed["items"]] == ["nightly"]
    detail = (await client.get("/schedules/nightly")).json()
    assert detail["last_jobs"] == [] and detail["task"] == "compat.add"
    assert (await client.post("/schedules", json=NIGHTLY)).status_code == 409
    assert (await client.delete("/schedules/nightly")).status_code == 204
    assert (await client.get("/schedules/nightly")).status_code == 404
    assert (await client.delete("/schedules/nightly")).status_code == 404


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"cron": "*/5 * * *"}, "five fields"),
        ({"cron": "99 * * * *"}, "invalid cron"),
        ({"timezone": "Mars/Base"}, "unknown time zone"),
        ({"cron": None, "every": 0.2}, "at least 1"),
        ({"cron": None, "every": -5}, "at least 1"),
        ({"missed": "burst"}, "missed must be"),
        ({"every": 10}, "exactly one"),
        ({"options": {"nope": 1}}, "unknown schedule option"),
        ({"args": [1]}, "argument"),
        ({"task": "no.such.task"}, "no.such.task"),
        ({"start": "2026-01-01T00:00:00"}, "time zone"),
    ],
)
async def test_malformed_schedules_are_422(
    client: AsyncTestClient[Litestar], changes: dict[str, Any], detail: str
) -> None:
    response = await client.post("/schedules", json={**NIGHTLY, **changes})
    assert response.status_code == 422, response.text
    assert detail in response.json()["detail"]


async def test_unknown_fields_and_wrong_types_are_400(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.post("/schedules", json={**NIGHTLY, "extra": 1})).status_code == 400
    assert (await client.post("/schedules", json={**NIGHTLY, "every": "often", "cron": None})).status_code == 400


async def test_pause_resume_and_change(client: AsyncTestClient[Litestar]) -> None:
    await client.post("/schedules", json=NIGHTLY)
    paused = await client.patch("/schedules/nightly", json={"enabled": False})
    assert paused.status_code == 200 and not paused.json()["enabled"]
    assert paused.json()["next_run"] is None and paused.json()["next_runs"] == []
    resumed = (await client.patch("/schedules/nightly", json={"enabled": True})).json()
    assert resumed["enabled"] and resumed["next_run"] is not None
    changed = (await client.patch("/schedules/nightly", json={"every": 3600, "args": [5, 5]})).json()
    assert changed["cron"] is None and changed["every"] == 3600 and changed["args"] == [5, 5]
    bad = await client.patch("/schedules/nightly", json={"timezone": "Nowhere/Else"})
    assert bad.status_code == 422
    assert (await client.patch("/schedules/ghost", json={"enabled": False})).status_code == 404


async def test_run_now_and_the_jobs_of_a_schedule(client: AsyncTestClient[Litestar]) -> None:
    await client.post("/schedules", json=NIGHTLY)
    run = await client.post("/schedules/nightly/run")
    assert run.status_code == 202, run.text
    job = run.json()
    assert job["schedule"] == "nightly" and job["tick"].endswith("Z")
    assert run.headers["location"] == f"/jobs/{job['id']}"
    deadline = time.monotonic() + 5
    while (shown := (await client.get(f"/jobs/{job['id']}")).json())["state"] != "SUCCESS":
        assert time.monotonic() < deadline, shown
        await asyncio.sleep(0.01)
    assert shown["result"] == 3 and shown["schedule"] == "nightly" and shown["tick"] == job["tick"]
    await client.post("/jobs", json={"task": "compat.add", "args": [0, 0]})
    listed = (await client.get("/jobs", params={"schedule": "nightly"})).json()
    assert [item["id"] for item in listed["items"]] == [job["id"]]
    assert (await client.get("/jobs", params={"schedule": "other"})).json()["items"] == []
    detail = (await client.get("/schedules/nightly")).json()
    assert [item["id"] for item in detail["last_jobs"]] == [job["id"]]
    assert (await client.post("/schedules/ghost/run")).status_code == 404


async def test_a_schedules_jobs_carry_its_concurrency_key(client: AsyncTestClient[Litestar]) -> None:
    options = {"concurrency_key": "report", "concurrency_limit": 1, "queue": "reports"}
    created = await client.post("/schedules", json={**NIGHTLY, "options": options})
    assert created.status_code == 201, created.text
    assert created.json()["options"] == options
    job = (await client.post("/schedules/nightly/run")).json()
    shown = (await client.get(f"/jobs/{job['id']}")).json()
    assert (shown["concurrency_key"], shown["concurrency_limit"], shown["queue"]) == ("report", 1, "reports")
    for bad in ({"concurrency_limit": 2}, {"concurrency_key": 7}, {"concurrency_key": "k", "concurrency_limit": 0}):
        refused = await client.post("/schedules", json={**NIGHTLY, "name": "bad", "options": bad})
        assert refused.status_code == 422, refused.text
        assert "concurrency" in refused.json()["detail"]


async def test_an_every_second_schedule_fires_on_its_own(client: AsyncTestClient[Litestar]) -> None:
    body = {"name": "fast", "task": "compat.add", "args": [2, 2], "every": 1}
    assert (await client.post("/schedules", json=body)).status_code == 201
    deadline = time.monotonic() + 10
    while not (items := (await client.get("/jobs", params={"schedule": "fast"})).json()["items"]):
        assert time.monotonic() < deadline, "the schedule never fired"
        await asyncio.sleep(0.05)
    assert items[0]["tick"] is not None and items[0]["task"] == "compat.add"


async def test_the_openapi_document_describes_the_schedules(client: AsyncTestClient[Litestar]) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    assert {"/schedules", "/schedules/{name}", "/schedules/{name}/run"} <= set(document["paths"])
    job_fields = document["components"]["schemas"]["JobOut"]["properties"]
    assert "schedule" in job_fields and "tick" in job_fields
