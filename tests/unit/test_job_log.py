"""The ``geekblog.jobs`` line of each job attempt, and how both log modes show it and tag a task's own lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from application.execution import JobContext, current_job
from domain.job import ErrorInfo, Job
from entrypoints.job_log import JobLog
from entrypoints.logging_setup import JobIdFilter, JsonFormatter, TextFormatter, configure_logging
from entrypoints.settings import Settings, SettingsError


def started_job() -> Job:
    job = Job(id="j-1", task="blog.publish", due_at=0.0, created_at=0.0)
    return job.started(owner="me", now=1.0, lease_until=60.0)


def record_of(caplog: pytest.LogCaptureFixture, level: int) -> logging.LogRecord:
    [record] = [r for r in caplog.records if r.name == "geekblog.jobs" and r.levelno == level]
    return record


def boom() -> RuntimeError:
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        return exc


class TestTheLine:
    def test_a_failure_is_a_warning_with_its_error_and_the_traceback_is_at_debug(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG, logger="geekblog.jobs")
        job = started_job()
        exc = boom()
        outcome = job.failed(ErrorInfo(type="RuntimeError", message="boom"), now=2.0)
        JobLog().finished(job, outcome, exc=exc, runtime=0.25)
        record = record_of(caplog, logging.WARNING)
        assert record.job == {  # type: ignore[attr-defined]
            "task": "blog.publish",
            "job_id": "j-1",
            "state": "FAILURE",
            "duration": 0.25,
            "attempt": 1,
            "error_type": "RuntimeError",
            "error_message": "boom",
        }
        message = record.getMessage()
        assert "task=blog.publish" in message and "id" in message and "error=RuntimeError: boom" in message
        debug = record_of(caplog, logging.DEBUG)
        assert debug.exc_info is not None and debug.exc_info[1] is exc

    def test_a_success_is_info_without_error_and_no_traceback(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.DEBUG, logger="geekblog.jobs")
        job = started_job()
        JobLog().finished(job, job.succeeded(3, now=2.0), value=3, runtime=0.5)
        record = record_of(caplog, logging.INFO)
        assert record.job["state"] == "SUCCESS" and "error_type" not in record.job  # type: ignore[attr-defined]
        assert not [r for r in caplog.records if r.levelno == logging.DEBUG]

    def test_a_retry_says_which_attempt_and_why(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="geekblog.jobs")
        job = started_job()
        outcome = job.retrying(ErrorInfo(type="ConnectionError", message="refused"), due_at=5.0)
        JobLog().finished(job, outcome, exc=ConnectionError("refused"), runtime=0.1)
        fields = record_of(caplog, logging.INFO).job  # type: ignore[attr-defined]
        assert (fields["state"], fields["attempt"], fields["error_type"]) == ("RETRY", 1, "ConnectionError")


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(JobIdFilter())
    target = logging.getLogger("geekblog.jobs")
    target.addHandler(handler)
    target.setLevel(logging.INFO)
    try:
        yield target, out
    finally:
        target.removeHandler(handler)
        target.setLevel(logging.NOTSET)


class TestTheModes:
    def test_production_json_has_the_fields_as_keys(self, stream: tuple[logging.Logger, io.StringIO]) -> None:
        target, out = stream
        target.handlers[-1].setFormatter(JsonFormatter())
        job = started_job()
        JobLog().finished(job, job.failed(ErrorInfo(type="RuntimeError", message="boom"), now=2.0), runtime=1.5)
        entry = json.loads(out.getvalue())
        assert entry["level"] == "WARNING" and entry["logger"] == "geekblog.jobs"
        assert (entry["task"], entry["job_id"], entry["state"]) == ("blog.publish", "j-1", "FAILURE")
        assert (entry["duration"], entry["attempt"], entry["error_type"], entry["error_message"]) == (
            1.5,
            1,
            "RuntimeError",
            "boom",
        )

    def test_development_text_has_them_as_pairs(self, stream: tuple[logging.Logger, io.StringIO]) -> None:
        target, out = stream
        target.handlers[-1].setFormatter(TextFormatter())
        job = started_job()
        JobLog().finished(job, job.succeeded(None, now=2.0), runtime=0.125)
        line = out.getvalue()
        assert "geekblog.jobs: job success: task=blog.publish job_id=j-1 state=SUCCESS duration=0.125 attempt=1" in line

    async def test_what_a_task_logs_is_tagged_with_its_job_id(self, stream: tuple[logging.Logger, io.StringIO]) -> None:
        target, out = stream
        target.handlers[-1].setFormatter(TextFormatter())
        context = JobContext(started_job(), asyncio.get_running_loop(), lambda *_: None)  # type: ignore[arg-type,return-value]
        token = current_job.set(context)
        try:
            await asyncio.to_thread(target.info, "fetching the feed")  # a sync task logs from its thread
        finally:
            current_job.reset(token)
        target.info("outside any job")
        first, second = out.getvalue().splitlines()
        assert first.endswith("geekblog.jobs [job j-1]: fetching the feed")
        assert second.endswith("geekblog.jobs: outside any job")
        target.handlers[-1].setFormatter(JsonFormatter())
        token = current_job.set(context)
        try:
            target.info("json too")
        finally:
            current_job.reset(token)
        assert json.loads(out.getvalue().splitlines()[-1])["job_id"] == "j-1"


class TestLogLevel:
    def test_at_warning_only_failures_are_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="geekblog.jobs")
        job = started_job()
        JobLog().finished(job, job.succeeded(1, now=2.0), runtime=0.1)
        JobLog().finished(job, job.failed(ErrorInfo(type="KeyError", message="'k'"), now=2.0), exc=KeyError("k"))
        assert [(r.levelno, r.job["state"]) for r in caplog.records] == [(logging.WARNING, "FAILURE")]  # type: ignore[attr-defined]

    def test_geekblog_log_level_in_any_case_and_a_bad_one_named(self) -> None:
        assert Settings.from_env({"GEEKBLOG_LOG_LEVEL": "debug"}).log_level == "DEBUG"
        assert Settings.from_env({}).log_level is None
        with pytest.raises(SettingsError, match="GEEKBLOG_LOG_LEVEL"):
            Settings.from_env({"GEEKBLOG_LOG_LEVEL": "loud"})

    @pytest.mark.parametrize(
        ("mode", "level", "expected"),
        [
            ("production", None, logging.INFO),
            ("development", None, logging.DEBUG),
            ("production", "ERROR", logging.ERROR),
        ],
    )
    def test_the_root_level(self, mode: str, level: str | None, expected: int) -> None:
        root = logging.getLogger()
        handlers, before = root.handlers[:], root.level
        try:
            configure_logging(mode, level)
            assert root.level == expected
        finally:
            root.handlers[:] = handlers
            root.setLevel(before)
