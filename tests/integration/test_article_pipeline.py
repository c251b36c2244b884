"""The article pipeline end to end on a real SQLite file and on PostgreSQL, through the HTTP API (AsyncTestClient)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain.article import section_headings
from entrypoints.http.app import create_app
from tests.integration.conftest import new_storage


@pytest.fixture(params=["sqlite", "postgres"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncTestClient[Litestar]]:
    storage = await new_storage(request.param, request, tmp_path)
    async with AsyncTestClient(create_app(storage.container(offline_delay=0.05))) as test_client:
        yield test_client


async def until_status(client: AsyncTestClient[Litestar], project_id: str, statuses: set[str]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        project: dict[str, Any] = (await client.get(f"/projects/{project_id}")).json()
        if project["status"] in statuses:
            return project
        assert time.monotonic() < deadline, f"project stayed {project['status']}"
        await asyncio.sleep(0.02)


def interval(job: dict[str, Any]) -> tuple[float, float]:
    return datetime.fromisoformat(job["started_at"]).timestamp(), datetime.fromisoformat(job["finished_at"]).timestamp()


class TestFullArticle:
    async def test_a_five_section_article_is_planned_written_in_parallel_assembled_and_finished(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        created = await client.post(
            "/projects", json={"topic": "Durable task queues", "audience": "developers", "sections": 5}
        )
        assert created.status_code == 201
        project_id = created.json()["id"]
        assert created.headers["location"] == f"/projects/{project_id}"
        assert (await client.get(f"/projects/{project_id}/article")).status_code == 404

        started = await client.post(f"/projects/{project_id}/article")
        assert started.status_code == 202
        workflow_id = started.json()["workflow_id"]
        assert (await client.post(f"/projects/{project_id}/article")).status_code == 409, "one run at a time"

        project = await until_status(client, project_id, {"FINISHED", "FAILED"})
        assert project["status"] == "FINISHED", project["error"]
        sections = project["plan"]["sections"]
        ids = [section["id"] for section in sections]
        assert len(ids) == 5
        assert set(project["research"]) == set(ids) and set(project["drafts"]) == set(ids)
        assert all(project["research"][i] and project["drafts"][i] for i in ids)
        titles = [section["title"] for section in sections]
        assert section_headings(project["article"]) == titles, "assembled in plan order"

        article = await client.get(f"/projects/{project_id}/article")
        assert article.status_code == 200 and article.headers["content-type"].startswith("text/markdown")
        assert section_headings(article.text) == titles

        jobs = (await client.get("/jobs", params={"workflow_id": workflow_id, "limit": 100})).json()["items"]
        tasks = sorted(job["task"] for job in jobs)
        assert tasks == sorted(
            ["ai.full_article_workflow", "ai.planning", "ai.sections", "ai.assembly", "ai.finishing"]
            + ["ai.research"] * 5
            + ["ai.writing"] * 5
        )
        assert all(job["state"] == "SUCCESS" for job in jobs)
        per_section = [job for job in jobs if job["task"] in ("ai.research", "ai.writing")]
        overlapping = [
            (a["args"][1], b["args"][1])
            for a in per_section
            for b in per_section
            if a["args"][1] != b["args"][1] and interval(a)[0] < interval(b)[1] and interval(b)[0] < interval(a)[1]
        ]
        assert overlapping, "research and writing of different sections ran at the same time"
        workflow = (await client.get(f"/workflows/{workflow_id}")).json()
        assert workflow["state"] == "SUCCESS" and workflow["result"]["project_id"] == project_id

    async def test_one_project_never_runs_two_workflows_at_once(self, client: AsyncTestClient[Litestar]) -> None:
        project_id = (await client.post("/projects", json={"topic": "Locks", "sections": 2})).json()["id"]
        first = (await client.post(f"/projects/{project_id}/article")).json()["workflow_id"]
        key = f"project:{project_id}"
        canvas = {"task": "ai.full_article_workflow", "args": [project_id], "options": {"concurrency_key": key}}
        second = (await client.post("/workflows", json={"canvas": canvas})).json()["id"]  # past the 409 check
        roots = []
        for workflow_id in (first, second):
            deadline = time.monotonic() + 20
            while (flow := (await client.get(f"/workflows/{workflow_id}")).json())["state"] != "SUCCESS":
                assert time.monotonic() < deadline and flow["state"] not in ("FAILURE", "REVOKED"), flow
                await asyncio.sleep(0.02)
            roots.append((await client.get(f"/jobs/{flow['nodes'][0]['job_id']}")).json())
        assert [(root["concurrency_key"], root["concurrency_limit"]) for root in roots] == [(key, 1), (key, 1)]
        assert interval(roots[1])[0] >= interval(roots[0])[1], "the second waited for the first to end"

    async def test_running_the_workflow_again_redoes_nothing(self, client: AsyncTestClient[Litestar]) -> None:
        project_id = (await client.post("/projects", json={"topic": "Caching", "sections": 2})).json()["id"]
        await client.post(f"/projects/{project_id}/article")
        first = await until_status(client, project_id, {"FINISHED"})
        again = await client.post(f"/projects/{project_id}/article")
        assert again.status_code == 202
        second = await until_status(client, project_id, {"FINISHED"})
        assert second["finished"] == first["finished"] and second["research"] == first["research"]

    async def test_the_event_stream_shows_stages_and_sections_and_closes(
        self, client: AsyncTestClient[Litestar]
    ) -> None:
        project_id = (await client.post("/projects", json={"topic": "Caching", "sections": 2})).json()["id"]
        await client.post(f"/projects/{project_id}/article")
        await until_status(client, project_id, {"FINISHED"})
        response = await client.get(f"/projects/{project_id}/events")
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [frame.split("\r\n") for frame in response.text.split("\r\n\r\n") if frame]
        assert len(frames) == 1, "a finished project's stream is its state, then closes"
        assert frames[0][0].startswith("id: ") and frames[0][1] == "event: state", frames


class TestProjectsApi:
    @pytest.mark.parametrize(
        "body",
        [{}, {"topic": ""}, {"topic": "x", "sections": 0}, {"topic": "x", "sections": 13}, {"topic": "x", "bogus": 1}],
    )
    async def test_bad_projects_are_400(self, client: AsyncTestClient[Litestar], body: dict[str, Any]) -> None:
        response = await client.post("/projects", json=body)
        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"

    async def test_unknown_projects_are_404(self, client: AsyncTestClient[Litestar]) -> None:
        for method, path in [
            ("GET", "/projects/x"),
            ("POST", "/projects/x/article"),
            ("GET", "/projects/x/article"),
            ("GET", "/projects/x/events"),
        ]:
            assert (await client.request(method, path)).status_code == 404, path

    async def test_an_edited_plan_is_what_gets_written(self, client: AsyncTestClient[Litestar]) -> None:
        project_id = (await client.post("/projects", json={"topic": "Caching", "sections": 4})).json()["id"]
        edited = await client.put(
            f"/projects/{project_id}/plan",
            json={
                "title": "My caching guide",
                "sections": [{"title": "Start here", "brief": "b"}, {"title": "Then this"}],
            },
        )
        assert edited.status_code == 200 and all(s["edited"] for s in edited.json()["plan"]["sections"])
        await client.post(f"/projects/{project_id}/article")
        project = await until_status(client, project_id, {"FINISHED"})
        assert section_headings(project["finished"]) == ["Start here", "Then this"]
        assert project["finished"].startswith("# My caching guide")

    async def test_projects_are_listed_newest_first(self, client: AsyncTestClient[Litestar]) -> None:
        first = (await client.post("/projects", json={"topic": "One"})).json()["id"]
        second = (await client.post("/projects", json={"topic": "Two"})).json()["id"]
        items = (await client.get("/projects")).json()["items"]
        assert [item["id"] for item in items] == [second, first]
