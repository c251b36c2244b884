"""Through the HTTP app: a job that fails says so in the service log (``geekblog.jobs``), with its error."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from adapters.sqlite import SqliteJobRepository
from application.ports import Commit
from domain.job import Job
from domain.states import JobState
from entrypoints.celery_compat import create_compatible_task
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.logging_setup import JobIdFilter
from entrypoints.settings import Settings
from tests.integration.test_http_api import settled

chatty_log = logging.getLogger("joblog_tests")


@create_compatible_task(name="joblog_tests.chatty_sync")
def chatty_sync() -> str:
    chatty_log.warning("sync task speaking")
    return "ok"


@create_compatible_task(name="joblog_tests.chatty_async")
async def chatty_async() -> str:
    chatty_log.warning("async task speaking")
    return "ok"


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(JobIdFilter())
        self.seen: dict[str, str | None] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.seen[record.getMessage()] = getattr(record, "job_id", None)


async def test_a_failing_and_a_succeeding_job_each_log_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="geekblog.jobs")
    app = create_app(Container(settings=Settings(persistence="memory")))
    async with AsyncTestClient(app) as client:
        failing = (
            await client.post("/jobs", json={"task": "geekblog.fail", "args": ["boom"], "options": {"max_retries": 0}})
        ).json()
        adding = (await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2]})).json()
        await settled(client, f"/jobs/{failing['id']}", {"FAILURE"})
        await settled(client, f"/jobs/{adding['id']}", {"SUCCESS"})
    lines = {r.job["job_id"]: r for r in caplog.records if r.name == "geekblog.jobs" and r.levelno >= logging.INFO}  # type: ignore[attr-defined]
    failed = lines[failing["id"]]
    assert failed.levelno == logging.WARNING
    assert failed.job["task"] == "geekblog.fail" and failed.job["state"] == "FAILURE"  # type: ignore[attr-defined]
    assert (failed.job["error_type"], failed.job["error_message"]) == ("RuntimeError", "boom")  # type: ignore[attr-defined]
    assert failed.job["attempt"] == 1 and failed.job["duration"] >= 0  # type: ignore[attr-defined]
    assert lines[adding["id"]].job["state"] == "SUCCESS"  # type: ignore[attr-defined]
    [traceback] = [r for r in caplog.records if r.name == "geekblog.jobs" and r.levelno == logging.DEBUG]
    assert traceback.exc_info is not None and "boom" in str(traceback.exc_info[1])


async def test_what_a_task_logs_carries_its_job_id_on_the_loop_and_in_a_thread() -> None:
    handler = Collected()
    chatty_log.addHandler(handler)
    try:
        app = create_app(Container(settings=Settings(persistence="memory")))
        async with AsyncTestClient(app) as client:
            ids = {}
            for kind in ("sync", "async"):
                ids[kind] = (await client.post("/jobs", json={"task": f"joblog_tests.chatty_{kind}"})).json()["id"]
                await settled(client, f"/jobs/{ids[kind]}", {"SUCCESS"})
            chatty_log.warning("outside a job")
    finally:
        chatty_log.removeHandler(handler)
    assert handler.seen == {
        "sync task speaking": ids["sync"],
        "async task speaking": ids["async"],
        "outside a job": None,
    }


def job_lines(caplog: pytest.LogCaptureFixture) -> dict[str, dict[str, object]]:
    return {
        r.job["job_id"]: r.job  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "geekblog.jobs" and r.levelno >= logging.INFO
    }


async def test_jobs_that_end_without_running_log_their_line_too(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Revoked while queued (by the service), expired at launch, and left running by a dead engine (failed
    with WorkerLostError at recovery): each ends with its line, as a job that ran does."""
    caplog.set_level(logging.INFO, logger="geekblog.jobs")
    db = str(tmp_path / "log.db")
    lost = Job(
        id="lost-1",
        task="geekblog.add",
        args=[1, 2],
        state=JobState.STARTED,
        due_at=1.0,
        created_at=1.0,
        started_at=1.0,
        attempts=1,
        retry_on_worker_lost=False,
        lease_owner="dead-engine",
        lease_expires_at=2.0,
    )
    repo = SqliteJobRepository(db)
    await repo.open()
    try:
        await repo.commit(Commit(jobs=[lost]))
    finally:
        await repo.close()
    app = create_app(Container(settings=Settings(persistence="sqlite", db_path=db)))
    async with AsyncTestClient(app) as client:
        await settled(client, "/jobs/lost-1", {"FAILURE"})
        later = (
            await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {"countdown": 600}})
        ).json()
        assert (await client.post(f"/jobs/{later['id']}/cancel")).status_code == 200
        expired = (
            await client.post(
                "/jobs", json={"task": "geekblog.add", "args": [1, 2], "options": {"expires": "2001-01-01T00:00:00Z"}}
            )
        ).json()
        await settled(client, f"/jobs/{expired['id']}", {"REVOKED"})
    lines = job_lines(caplog)
    assert lines["lost-1"]["state"] == "FAILURE" and lines["lost-1"]["error_type"] == "WorkerLostError"
    assert lines[later["id"]]["state"] == "REVOKED" and lines[later["id"]]["task"] == "geekblog.add"
    assert lines[expired["id"]]["state"] == "REVOKED" and "expired" in str(lines[expired["id"]]["error_message"])
