"""The article pipeline in the real service, against a fake OpenAI-compatible model server over HTTP, on a
SQLite file and on PostgreSQL.

The crash test SIGKILLs the service while the sections are being researched, starts it again on the
same database, and checks the article is finished without redoing any saved stage. On PostgreSQL the
restarted service takes over the killed one's jobs only once their leases expire (another engine may
share the database): the service runs with a lease of :data:`PG_LEASE_SECONDS` there.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Service
from tests.support.fake_openai import Call, FakeOpenAI, error_body, part_number
from tests.support.postgres import empty_tables_blocking

pytestmark = pytest.mark.slow  # long: a SIGKILLed child and its restart (make test still runs it)

SECTIONS = 5
STEP = 0.3  # seconds each model call takes
PG_LEASE_SECONDS = 3


@pytest.fixture(params=["sqlite", "postgres"])
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The service's database settings: its SQLite file (the default), or the run's PostgreSQL database,
    emptied, with a short lease."""
    if request.param == "sqlite":
        return {}
    url: str = request.getfixturevalue("postgres_url")
    empty_tables_blocking(url)
    return {"GEEKBLOG_DATABASE_URL": url, "GEEKBLOG_LEASE_SECONDS": str(PG_LEASE_SECONDS)}


def staggered(call: Call) -> float:
    """Research of part n takes n steps, so the sections' notes are saved one after another."""
    if call.stage == "research":
        return STEP * (part_number(call.section) or 1)
    return STEP


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(delay=staggered) as server:
        yield server


def llm_env(fake: FakeOpenAI, **extra: str) -> dict[str, str]:
    return {
        "GEEKBLOG_LLM_BASE_URL": fake.base_url,
        "GEEKBLOG_LLM_MODEL": "fake-model",
        "GEEKBLOG_LLM_API_KEY": "sk-e2e",
        "GEEKBLOG_LLM_TIMEOUT": "10",
        "GEEKBLOG_LLM_MAX_RETRIES": "1",
        **extra,
    }


def poll(
    client: httpx.Client, path: str, done: Callable[[dict[str, Any]], bool], timeout: float, what: str
) -> dict[str, Any]:
    """GET ``path`` until ``done(body)`` (bounded by ``timeout``); the assertion shows the last body."""
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = client.get(path).json()
        if done(body):
            return body
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s; last {path}: {body}"
        time.sleep(0.02)


def jobs_of(client: httpx.Client, workflow_id: str) -> list[dict[str, Any]]:
    page = client.get("/jobs", params={"workflow_id": workflow_id, "limit": 500})
    assert page.status_code == 200, page.text
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def start_article(client: httpx.Client, project_id: str) -> str:
    started = client.post(f"/projects/{project_id}/article")
    assert started.status_code == 202, started.text
    workflow_id: str = started.json()["workflow_id"]
    return workflow_id


class TestCrashMidResearch:
    def test_a_killed_service_finishes_the_article_without_redoing_saved_stages(
        self, fake: FakeOpenAI, make_service: Callable[..., Service], storage_env: dict[str, str]
    ) -> None:
        service = make_service(**llm_env(fake), **storage_env)
        with service.client() as client:
            created = client.post("/projects", json={"topic": "SQLite in production", "sections": SECTIONS})
            assert created.status_code == 201, created.text
            project_id = created.json()["id"]
            workflow_id = start_article(client, project_id)

            mid = poll(
                client,
                f"/projects/{project_id}",
                lambda p: len(p["research"]) >= 2 or p["status"] in ("FINISHED", "FAILED"),
                timeout=15,
                what="two sections researched",
            )
        service.stop(signal.SIGKILL)
        assert 2 <= len(mid["research"]) < SECTIONS, f"the kill came too late to be mid-research: {mid}"
        assert mid["status"] == "WRITING", mid
        assert service.process is not None and service.process.returncode == -signal.SIGKILL

        calls_before = len(fake.calls)
        plan = [(section["id"], section["title"]) for section in mid["plan"]["sections"]]
        assert len(plan) == SECTIONS
        researched_before = {title for ident, title in plan if ident in mid["research"]}

        service.start()
        with service.client() as client:
            done = poll(
                client,
                f"/projects/{project_id}",
                lambda p: p["status"] in ("FINISHED", "FAILED"),
                timeout=20,
                what="the article finished after the restart",
            )
            assert done["status"] == "FINISHED", f"{done}\n{service.log()}"
            article = client.get(f"/projects/{project_id}/article")
            jobs = jobs_of(client, workflow_id)

        assert article.status_code == 200
        assert article.headers["content-type"].startswith("text/markdown")
        headings = [line[3:].strip() for line in article.text.splitlines() if line.startswith("## ")]
        assert headings == [title for _, title in plan]
        assert "*Summary:" in article.text  # the finishing stage's edit was kept

        after = fake.counts(since=calls_before)
        for title in researched_before:
            assert after[("research", title)] == 0, f"{title!r} was researched again after the restart"
        for _, title in plan:
            if title not in researched_before:
                assert after[("research", title)] >= 1, f"{title!r} had no research and got none after the restart"
            assert 1 <= fake.count("research", title) <= 2, f"{title!r} researched {fake.count('research', title)}x"
            assert 1 <= fake.count("writing", title) <= 2, f"{title!r} written {fake.count('writing', title)}x"
        assert fake.count("planning") == 1, "planning was redone"
        assert fake.count("planning", since=calls_before) == 0
        assert 1 <= fake.count("finishing") <= 2
        # A request the SIGKILL cut in the middle of sending arrives with a truncated body: not a model call.
        complete = [call for call in fake.calls if isinstance(call.body, dict)]
        assert {call.stage for call in complete} == {"planning", "research", "writing", "finishing"}

        by_task: dict[str, list[dict[str, Any]]] = {}
        for job in jobs:
            by_task.setdefault(job["task"], []).append(job)
        assert {task: len(found) for task, found in by_task.items()} == {
            "ai.full_article_workflow": 1,
            "ai.planning": 1,
            "ai.sections": 1,
            "ai.research": SECTIONS,
            "ai.writing": SECTIONS,
            "ai.assembly": 1,
            "ai.finishing": 1,
        }
        assert sorted(job["args"][1] for job in by_task["ai.research"]) == sorted(ident for ident, _ in plan)
        assert {job["state"] for job in jobs} == {"SUCCESS"}, [(job["task"], job["state"]) for job in jobs]

        # Run the finished project again: every stage's output is saved, so no model call is made.
        calls_before_rerun = len(fake.calls)
        with service.client() as client:
            rerun = start_article(client, project_id)
            assert rerun != workflow_id
            workflow = poll(
                client,
                f"/workflows/{rerun}",
                lambda w: w["state"] in ("SUCCESS", "FAILURE", "REVOKED"),
                timeout=15,
                what="the rerun finished",
            )
            assert workflow["state"] == "SUCCESS", workflow
            again = client.get(f"/projects/{project_id}/article")
            status = client.get(f"/projects/{project_id}").json()["status"]
            rerun_jobs = jobs_of(client, rerun)
        assert again.status_code == 200 and again.text == article.text
        assert status == "FINISHED"
        assert fake.counts(since=calls_before_rerun) == {}
        assert {job["state"] for job in rerun_jobs} == {"SUCCESS"}
        assert sum(job["task"] == "ai.research" for job in rerun_jobs) == SECTIONS


class TestModelServerRefuses:
    def test_a_400_fails_the_project_and_the_workflow_with_the_servers_message(
        self, fake: FakeOpenAI, make_service: Callable[..., Service], storage_env: dict[str, str]
    ) -> None:
        message = "The model `fake-model` does not exist or you do not have access to it."
        fake.always(400, error_body(message, "invalid_request_error", "model_not_found"))
        service = make_service(**llm_env(fake), **storage_env)
        with service.client() as client:
            project_id = client.post("/projects", json={"topic": "Refusals", "sections": 3}).json()["id"]
            workflow_id = start_article(client, project_id)
            failed = poll(
                client,
                f"/projects/{project_id}",
                lambda p: p["status"] in ("FINISHED", "FAILED"),
                timeout=15,
                what="the project failed",
            )
            workflow = poll(
                client,
                f"/workflows/{workflow_id}",
                lambda w: w["state"] in ("SUCCESS", "FAILURE", "REVOKED"),
                timeout=15,
                what="the workflow ended",
            )
            article = client.get(f"/projects/{project_id}/article")

        assert failed["status"] == "FAILED"
        assert message in failed["error"]
        assert "HTTP 400" in failed["error"] and failed["error"].startswith("planning")
        assert workflow["state"] == "FAILURE", workflow
        assert article.status_code == 404
        assert [call.stage for call in fake.calls] == ["planning"]  # a 400 is not retried
