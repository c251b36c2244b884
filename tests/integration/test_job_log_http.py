"""Through the HTTP app: a job that fails says so in the service log (``geekblog.jobs``), with its error."""

from __future__ import annotations

import logging

import pytest
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings
from tests.integration.test_http_api import settled


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
