"""A request body must be sent as ``application/json`` (or ``application/*+json``): anything else is a 415.

A body read as JSON whatever its content type lets any web page make a visitor's browser submit jobs to
a service on localhost (the default has no token): a ``text/plain`` or form POST is a "simple"
cross-site request, sent without a CORS preflight. Requests without a body, and routes that read none,
are unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings

Client = AsyncTestClient[Litestar]
JOB = b'{"task":"geekblog.add","args":[1,2]}'


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    app = create_app(Container(settings=Settings(persistence="memory", shutdown_grace=0.5)))
    async with AsyncTestClient(app) as test_client:
        yield test_client


def assert_415(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 415, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == 415 and body["title"] == "Unsupported media type", body
    assert "application/json" in body["detail"], body
    return body


async def stored_jobs(client: Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/jobs", params={"limit": 500})).json()["items"]
    return items


async def test_a_text_plain_job_is_refused_and_nothing_is_stored(client: Client) -> None:
    response = await client.post("/jobs", content=JOB, headers={"content-type": "text/plain"})
    assert "'text/plain'" in assert_415(response)["detail"]
    assert await stored_jobs(client) == []


async def test_a_body_without_a_content_type_is_refused(client: Client) -> None:
    assert "no content type" in assert_415(await client.post("/jobs", content=JOB))["detail"]
    assert await stored_jobs(client) == []


async def test_a_chunked_text_plain_body_is_refused(client: Client) -> None:
    headers = {"content-type": "text/plain", "transfer-encoding": "chunked"}
    assert_415(await client.post("/jobs", content=JOB, headers=headers))
    assert await stored_jobs(client) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.geekblog+json"],
)
async def test_json_content_types_are_accepted(client: Client, content_type: str) -> None:
    response = await client.post("/jobs", content=JOB, headers={"content-type": content_type})
    assert response.status_code == 202, response.text


@pytest.mark.parametrize("content_type", ["application/jsonx", "text/json", "application/json-seq", "json"])
async def test_near_misses_are_refused(client: Client, content_type: str) -> None:
    assert_415(await client.post("/jobs", content=JOB, headers={"content-type": content_type}))


async def test_every_body_route_refuses_text_plain(client: Client) -> None:
    project = (await client.post("/projects", json={"topic": "SQLite"})).json()
    plan = b'{"title":"T","sections":[{"title":"S"}]}'
    for method, path, body in [
        ("POST", "/workflows", b'{"canvas":{"task":"geekblog.add","args":[1,2]}}'),
        ("POST", "/projects", b'{"topic":"x"}'),
        ("PUT", f"/projects/{project['id']}/plan", plan),
        ("POST", f"/projects/{project['id']}/article", b"{}"),
    ]:
        assert_415(await client.request(method, path, content=body, headers={"content-type": "text/plain"}))
    after = (await client.get(f"/projects/{project['id']}")).json()
    assert (after["plan"], after["workflow_id"], after["status"]) == (None, None, project["status"])
    assert [p["id"] for p in (await client.get("/projects")).json()["items"]] == [project["id"]]
    assert await stored_jobs(client) == []


async def test_the_body_is_not_read_before_the_refusal(client: Client) -> None:
    big = b'{"task":"geekblog.echo","args":["' + b"y" * 2_000_000 + b'"]}'
    assert_415(await client.post("/jobs", content=big, headers={"content-type": "text/plain"}))


async def test_requests_without_a_body_are_unchanged(client: Client) -> None:
    job = (
        await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {"countdown": 60}})
    ).json()
    cancelled = await client.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    project = (await client.post("/projects", json={"topic": "SQLite"})).json()
    started = await client.post(f"/projects/{project['id']}/article", headers={"content-length": "0"})
    assert started.status_code == 202, started.text


async def test_a_route_that_reads_no_body_ignores_one(client: Client) -> None:
    job = (
        await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {"countdown": 60}})
    ).json()
    response = await client.post(f"/jobs/{job['id']}/cancel", content=b"x", headers={"content-type": "text/plain"})
    assert response.status_code == 200, response.text


async def test_routing_and_health_come_first(client: Client) -> None:
    headers = {"content-type": "text/plain"}
    assert (await client.post("/nowhere", content=JOB, headers=headers)).status_code == 404
    assert (await client.patch("/jobs", content=JOB, headers=headers)).status_code == 405
    assert (await client.request("GET", "/health", content=JOB, headers=headers)).status_code == 200


async def test_without_the_token_it_is_a_401_first() -> None:
    settings = Settings(persistence="memory", shutdown_grace=0.5, api_token="s3cret")
    async with AsyncTestClient(create_app(Container(settings=settings))) as client:
        refused = await client.post("/jobs", content=JOB, headers={"content-type": "text/plain"})
        assert refused.status_code == 401
        headers = {"content-type": "text/plain", "authorization": "Bearer s3cret"}
        assert_415(await client.post("/jobs", content=JOB, headers=headers))
