"""``Idempotency-Key`` on ``POST /jobs`` and ``POST /workflows``, through Litestar's AsyncTestClient on each
repository (memory, SQLite, PostgreSQL): the first request stores the key with what it creates (202); the
same request again answers 200 with that job or workflow as it is now; another request under the key is a
409; a malformed key a 422; concurrent duplicates create one job. (A purged job freeing its key: the
repository contract, tests/contract/test_idempotency_keys.py, and tests/integration/test_idempotent_submission.py.)"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.http.app import create_app
from tests.integration import compat_tasks
from tests.integration.conftest import Storage, new_storage
from tests.integration.test_http_api import settled

ADD = {"task": "compat.add", "args": [2, 3]}
LATER = {"task": "compat.add", "args": [2, 3], "options": {"countdown": 60}}
CHAIN = {"canvas": {"chain": [{"task": "compat.add", "args": [1, 1]}, {"task": "compat.add", "args": [1]}]}}


@pytest.fixture
async def client(storage: Storage) -> AsyncIterator[AsyncTestClient[Litestar]]:
    compat_tasks.CALLS.clear()
    container = storage.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(container)) as test_client:
        yield test_client


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def count_jobs(client: AsyncTestClient[Litestar]) -> int:
    return len((await client.get("/jobs", params={"limit": 500})).json()["items"])


class TestJobs:
    async def test_the_same_request_again_answers_200_with_the_job_as_it_is_now(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        first = await client.post("/jobs", json=ADD, headers=keyed("order-1"))
        assert first.status_code == 202
        job = first.json()
        assert job["idempotency_key"] == "order-1"
        done = await settled(client, first.headers["location"], {"SUCCESS"})
        # The same request: keys in another order, other spacing, defaults spelt out.
        same = json.dumps({"kwargs": {}, "args": [2, 3], "task": "compat.add"}, indent=2)
        again = await client.post(
            "/jobs", content=same, headers={**keyed("order-1"), "Content-Type": "application/json"}
        )
        assert again.status_code == 200
        assert again.headers["location"] == f"/jobs/{job['id']}"
        assert again.headers["content-type"] == "application/json"
        assert again.json() == done and set(again.json()) == set(job)  # the 202's shape, the job's current state
        assert compat_tasks.CALLS == [("add", (2, 3))] and await count_jobs(client) == 1

    async def test_another_request_under_a_used_key_is_a_409(self, client: AsyncTestClient[Litestar]) -> None:
        job = (await client.post("/jobs", json=LATER, headers=keyed("k"))).json()
        for other_path, other_body in (("/jobs", {**LATER, "args": [9, 9]}), ("/workflows", CHAIN)):
            refused = await client.post(other_path, json=other_body, headers=keyed("k"))
            assert refused.status_code == 409
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert problem["type"] == "urn:geekblog:problem:idempotency-key-reused"
            assert "'k'" in problem["detail"] and job["id"] in problem["detail"]
        assert await count_jobs(client) == 1

    async def test_without_a_key_every_request_is_a_new_job(self, client: AsyncTestClient[Litestar]) -> None:
        plain = [(await client.post("/jobs", json=LATER)).json() for _ in range(2)]
        assert [job["idempotency_key"] for job in plain] == [None, None]
        ids = {job["id"] for job in plain}
        keyed_ids = {(await client.post("/jobs", json=LATER, headers=keyed(f"k{i}"))).json()["id"] for i in range(2)}
        assert len(ids | keyed_ids) == 4

    async def test_concurrent_duplicates_create_one_job(self, client: AsyncTestClient[Litestar]) -> None:
        answers = await asyncio.gather(*(client.post("/jobs", json=LATER, headers=keyed("burst")) for _ in range(8)))
        assert sorted(answer.status_code for answer in answers) == [200] * 7 + [202]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert await count_jobs(client) == 1

    @pytest.mark.parametrize(
        ("headers", "detail"),
        [
            ([("Idempotency-Key", "")], "empty"),
            ([("Idempotency-Key", "   ")], "empty or blank"),
            ([("Idempotency-Key", "x" * 256)], "at most 255 characters"),
            ([("Idempotency-Key", "caf\u00e9".encode())], "printable ASCII"),
            ([("Idempotency-Key", "a\tb")], "printable ASCII"),
            ([("Idempotency-Key", "a"), ("Idempotency-Key", "b")], "given once"),  # read as "a, b"
            ([("Idempotency-Key", "a,b")], "given once"),
        ],
    )
    @pytest.mark.parametrize("path", ["/jobs", "/workflows"])
    async def test_a_malformed_key_is_a_422_and_stores_nothing(
        self, client: AsyncTestClient[Litestar], path: str, headers: list[tuple[str, Any]], detail: str
    ) -> None:
        body = LATER if path == "/jobs" else CHAIN
        refused = await client.post(path, json=body, headers=headers)
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert detail in refused.json()["detail"]
        assert await count_jobs(client) == 0

    async def test_a_key_of_255_printable_characters_is_taken(self, client: AsyncTestClient[Litestar]) -> None:
        key = ("Ab9 -_.:/~!;=" * 20)[:255]
        assert (await client.post("/jobs", json=LATER, headers=keyed(key))).status_code == 202
        assert (await client.post("/jobs", json=LATER, headers=keyed(key))).status_code == 200


class TestWorkflows:
    async def test_the_same_canvas_again_answers_200_with_the_workflow(self, client: AsyncTestClient[Litestar]) -> None:
        first = await client.post("/workflows", json=CHAIN, headers=keyed("flow"))
        assert first.status_code == 202
        done = await settled(client, first.headers["location"], {"SUCCESS"})
        again = await client.post("/workflows", json=CHAIN, headers=keyed("flow"))
        assert again.status_code == 200
        assert again.headers["location"] == first.headers["location"]
        assert again.json() == done and done["result"] == 3
        assert len(compat_tasks.CALLS) == 2  # the chain ran once

    async def test_the_workflow_shows_its_key_once_it_has_run(self, client: AsyncTestClient[Litestar]) -> None:
        first = await client.post("/workflows", json=CHAIN, headers=keyed("flow-key"))
        assert first.status_code == 202 and first.json()["idempotency_key"] == "flow-key"
        done = await settled(client, first.headers["location"], {"SUCCESS"})  # every advance keeps it
        assert done["idempotency_key"] == "flow-key"
        plain = await client.post("/workflows", json=CHAIN)
        assert plain.json()["idempotency_key"] is None
        assert (await client.get(plain.headers["location"])).json()["idempotency_key"] is None

    async def test_another_canvas_or_a_job_under_its_key_is_a_409(self, client: AsyncTestClient[Litestar]) -> None:
        flow = (await client.post("/workflows", json=CHAIN, headers=keyed("flow"))).json()
        other = {"canvas": {"group": [{"task": "compat.add", "args": [1, 1]}]}}
        for path, body in (("/workflows", other), ("/jobs", ADD)):
            refused = await client.post(path, json=body, headers=keyed("flow"))
            assert refused.status_code == 409 and flow["id"] in refused.json()["detail"]

    async def test_concurrent_duplicates_create_one_workflow(self, client: AsyncTestClient[Litestar]) -> None:
        later = {"canvas": {"chain": [{"task": "compat.add", "args": [1, 1], "options": {"countdown": 60}}]}}
        answers = await asyncio.gather(*(client.post("/workflows", json=later, headers=keyed("wb")) for _ in range(6)))
        assert sorted(answer.status_code for answer in answers) == [200] * 5 + [202]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert await count_jobs(client) == 1


@pytest.fixture(params=["sqlite", "postgres"])
async def durable(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return await new_storage(request.param, request, tmp_path)


async def test_the_key_and_the_expiry_survive_a_restart(durable: Storage) -> None:
    body = {"task": "compat.add", "args": [2, 3], "options": {"countdown": 60, "expires": 120}}
    container = durable.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(container)) as before:
        first = await before.post("/jobs", json=body, headers=keyed("across"))
        assert first.status_code == 202
    again = durable.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(again)) as after:
        shown = (await after.get(first.headers["location"])).json()
        assert shown["expires"] == first.json()["expires"] and shown["idempotency_key"] == "across"
        repeat = await after.post("/jobs", json=body, headers=keyed("across"))
        assert repeat.status_code == 200 and repeat.json()["id"] == shown["id"]
        other = await after.post("/jobs", json={**body, "args": [3, 3]}, headers=keyed("across"))
        assert other.status_code == 409


async def test_a_workflows_key_survives_a_restart(durable: Storage) -> None:
    container = durable.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(container)) as before:
        first = await before.post("/workflows", json=CHAIN, headers=keyed("flow-across"))
        assert first.status_code == 202
        await settled(before, first.headers["location"], {"SUCCESS"})
    again = durable.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(again)) as after:
        shown = (await after.get(first.headers["location"])).json()
        assert (shown["state"], shown["idempotency_key"]) == ("SUCCESS", "flow-across")


async def test_the_sqlite_migration_gives_keyed_workflows_their_key(tmp_path: Path) -> None:
    """A file of schema 10 (keys stored, no column on workflows yet) opens with each keyed workflow's key."""
    storage = Storage("sqlite", db_path=str(tmp_path / "engine.db"))
    container = storage.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(container)) as before:
        first = await before.post("/workflows", json=CHAIN, headers=keyed("old-flow"))
        plain = await before.post("/workflows", json=CHAIN)
    with sqlite3.connect(tmp_path / "engine.db") as connection:
        connection.execute("ALTER TABLE workflows DROP COLUMN idempotency_key")
        connection.execute("PRAGMA user_version = 10")
    connection.close()
    again = storage.container(task_modules=("tests.integration.compat_tasks",))
    async with AsyncTestClient(create_app(again)) as after:
        assert (await after.get(first.headers["location"])).json()["idempotency_key"] == "old-flow"
        assert (await after.get(plain.headers["location"])).json()["idempotency_key"] is None
