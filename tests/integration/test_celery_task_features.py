"""Celery's task features on the engine (memory, SQLite and PostgreSQL): ``Reject``, ``pydantic=True``, retry options,
the soft/hard time-limit check, the worker's log lines, ``task_received`` and request fields, and
``broker_pool_acquire_timeout``."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from application.engine import Engine
from entrypoints.celery_compat import (
    ImproperlyConfigured,
    Reject,
    create_compatible_task,
    current_app,
    signals,
    states,
)
from entrypoints.compat import trace
from tests.integration import task_feature_tasks as t


class Seen:
    """Receivers of ``task_received``, ``task_failure`` and ``task_postrun``, by signal name."""

    def __init__(self) -> None:
        self.named: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._receivers: list[tuple[Any, Any]] = []
        for signal in (signals.task_received, signals.task_failure, signals.task_postrun):
            receiver = self._receiver(signal.name)
            signal.connect(receiver, weak=False)
            self._receivers.append((signal, receiver))

    def _receiver(self, name: str) -> Any:
        def receive(**named: Any) -> None:
            with self._lock:
                self.named.setdefault(name, []).append(named)

        return receive

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.named.get(name, []))

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)


@pytest.fixture
def seen() -> Iterator[Seen]:
    recorder = Seen()
    yield recorder
    recorder.close()


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


class TestReject:
    async def test_requeue_runs_the_job_again_redelivered(self, engine: Engine, seen: Seen) -> None:
        result = await t.reject_then_succeed.delay()
        assert await result.get(timeout=5) == {"retries": 0, "redelivered": True}  # Celery: a redelivery is not a retry
        assert result.state == states.SUCCESS
        await eventually(lambda: len(seen.of("task_postrun")) == 2)
        assert [n["state"] for n in seen.of("task_postrun")] == ["REJECTED", "SUCCESS"]
        assert seen.of("task_failure") == []

    async def test_without_requeue_the_job_fails_with_the_rejection(self, engine: Engine, seen: Seen) -> None:
        result = await t.reject_for_good.delay()
        with pytest.raises(Reject) as raised:
            await result.get(timeout=5)
        assert (raised.value.reason, raised.value.requeue) == ("rejected", False)
        assert result.state == states.FAILURE and result.failed()
        await eventually(lambda: len(seen.of("task_failure")) == 1)
        failure = seen.of("task_failure")[0]
        assert failure["sender"] is t.reject_for_good and isinstance(failure["exception"], Reject)
        assert [n["state"] for n in seen.of("task_postrun")] == ["REJECTED"]

    def test_an_eager_run_is_rejected_and_get_gives_none(self) -> None:
        result = t.reject_for_good.apply()
        assert result.state == "REJECTED" and isinstance(result.result, Reject)
        assert result.get() is None and not result.failed()


class TestPydantic:
    async def test_arguments_are_validated_into_models_and_a_model_result_dumped(self, engine: Engine) -> None:
        result = await t.add_points.delay({"x": 1, "y": 2}, {"x": "3", "y": 4})
        assert await result.get(timeout=5) == {"total": 10}
        assert await (await t.add_points.delay({"x": 1, "y": 2})).get(timeout=5) == {"total": 3}

    async def test_string_annotations_and_async_tasks(self, engine: Engine) -> None:
        assert await (await t.add_points_async.delay({"x": 5, "y": 6})).get(timeout=5) == {"total": 11}

    async def test_a_bound_task_and_a_plain_return_annotation(self, engine: Engine) -> None:
        result = await t.point_of.delay({"x": 1, "y": 1})
        assert await result.get(timeout=5) == {"type": "Point", "x": 1, "task": "features.point_of"}

    async def test_arguments_that_do_not_validate_fail_the_job(self, engine: Engine) -> None:
        result = await t.add_points.delay({"x": "not a number", "y": 2})
        with pytest.raises(Exception, match="validation error"):
            await result.get(timeout=5)
        assert result.state == states.FAILURE

    def test_called_directly_it_validates_too(self) -> None:
        assert t.add_points({"x": 1, "y": 1}) == {"total": 2}

    def test_without_pydantic_installed_the_decorator_refuses(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, "pydantic", None)
        with pytest.raises(ImproperlyConfigured, match="install pydantic"):

            @create_compatible_task(name="features.no_pydantic", pydantic=True)
            def no_pydantic(a: Any) -> Any:
                return a


class TestRetryOptions:
    async def test_the_next_attempt_gets_the_options_of_retry(self, engine: Engine) -> None:
        result = await t.retry_with_options.apply_async(
            kwargs={
                "priority": 7,
                "queue": "q2",
                "routing_key": "rk2",
                "headers": {"x-h": "v"},
                "expires": 60,
            },
            priority=1,
        )
        got = await result.get(timeout=5)
        info = got["delivery_info"]
        assert (info["priority"], info["queue"], info["routing_key"], info["redelivered"]) == (
            7,
            "q2",
            "rk2",
            False,
        )  # a retry is a new message, not a redelivery
        assert got["headers"] == {"x-h": "v"} and got["expires"] is not None

    async def test_an_option_retry_does_not_implement_is_refused_by_name(self, engine: Engine) -> None:
        result = await t.retry_with_options.apply_async(kwargs={"exchange": "x"})
        with pytest.raises(TypeError, match="exchange"):
            await result.get(timeout=5)

    def test_retry_kwargs_with_an_unknown_option_are_refused_at_decoration(self) -> None:
        with pytest.raises(TypeError, match="link"):

            @create_compatible_task(
                name="features.bad_retry_kwargs", autoretry_for=(ValueError,), retry_kwargs={"link": 1}
            )
            def bad_retry_kwargs() -> None:
                raise ValueError


class TestTimeLimitCheck:
    def test_a_soft_limit_past_the_hard_limit_is_refused_at_apply_async(self) -> None:
        with pytest.raises(ValueError, match="soft_time_limit must be less than or equal to time_limit"):
            t.limits_inverted.apply_async()
        with pytest.raises(ValueError, match="soft_time_limit must be less than or equal to time_limit"):
            t.limits_inverted.delay()

    def test_also_under_task_always_eager(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(current_app.conf, "task_always_eager", True)
        with pytest.raises(ValueError, match="soft_time_limit"):
            t.limits_inverted.delay()


@pytest.fixture
def celery_info_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="celery")
    return caplog


def _lines(caplog: pytest.LogCaptureFixture, task_id: str) -> list[tuple[str, int, str, dict[str, Any]]]:
    return [
        (r.name, r.levelno, r.getMessage(), r.data)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name in ("celery.worker.strategy", "celery.app.trace") and r.data["id"] == task_id  # type: ignore[attr-defined]
    ]


class TestLogLines:
    async def test_received_and_succeeded(self, engine: Engine, celery_info_logs: pytest.LogCaptureFixture) -> None:
        result = await t.add.delay(2, 3)
        assert await result.get(timeout=5) == 5
        await eventually(lambda: len(_lines(celery_info_logs, result.id)) == 2)
        (received, succeeded) = _lines(celery_info_logs, result.id)
        assert received[:3] == (
            "celery.worker.strategy",
            logging.INFO,
            f"Task features.add[{result.id}] received",
        )
        assert (received[3]["args"], received[3]["kwargs"]) == ("[2, 3]", "{}")
        assert succeeded[:2] == ("celery.app.trace", logging.INFO)
        assert succeeded[2].startswith(f"Task features.add[{result.id}] succeeded in ") and succeeded[2].endswith(
            "s: 5"
        )
        assert succeeded[3]["return_value"] == "5" and succeeded[3]["runtime"] >= 0

    async def test_a_failure_is_an_error_line_with_the_traceback_and_argsrepr(
        self, engine: Engine, celery_info_logs: pytest.LogCaptureFixture
    ) -> None:
        result = await t.broken.apply_async(("secret",), argsrepr="(<hidden>)", kwargsrepr="{}")
        with pytest.raises(t.Broken):
            await result.get(timeout=5)
        await eventually(lambda: len(_lines(celery_info_logs, result.id)) == 2)
        failed = _lines(celery_info_logs, result.id)[1]
        assert failed[:2] == ("celery.app.trace", logging.ERROR)
        assert failed[2] == f"Task features.broken[{result.id}] raised unexpected: Broken('broken', 'secret')"
        assert failed[3]["args"] == "(<hidden>)" and "Traceback" in failed[3]["traceback"]
        record = next(
            r for r in celery_info_logs.records if r.levelno == logging.ERROR and r.name == "celery.app.trace"
        )
        assert record.exc_info is not None and record.exc_info[0] is t.Broken
        assert record.msg == trace.LOG_FAILURE

    async def test_a_rejection_is_a_warning(self, engine: Engine, celery_info_logs: pytest.LogCaptureFixture) -> None:
        result = await t.reject_for_good.delay()
        with pytest.raises(Reject):
            await result.get(timeout=5)
        await eventually(lambda: len(_lines(celery_info_logs, result.id)) == 2)
        rejected = _lines(celery_info_logs, result.id)[1]
        assert rejected[1] == logging.WARNING
        assert rejected[2] == f"Task features.reject_for_good[{result.id}] reject requeue=False: rejected"

    async def test_nothing_is_logged_below_info(self, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.WARNING, logger="celery")
        result = await t.add.delay(1, 1)
        assert await result.get(timeout=5) == 2
        assert _lines(caplog, result.id) == []


class TestRequestFields:
    async def test_task_received_gets_the_request_with_its_nesting(self, engine: Engine, seen: Seen) -> None:
        plain = await t.request_fields.delay()
        assert (await plain.get(timeout=5))["replaced_task_nesting"] == 0
        replaced = await t.replaced.delay()
        assert (await replaced.get(timeout=5))["replaced_task_nesting"] == 1
        received = {n["request"].task: n["request"] for n in seen.of("task_received")}
        assert received["features.replaced"].replaced_task_nesting == 0
        assert [n["request"].replaced_task_nesting for n in seen.of("task_received")] == [0, 0, 1]

    def test_an_eager_run_is_not_received(self, seen: Seen) -> None:
        assert t.add.apply((1, 2)).get() == 3
        assert seen.of("task_received") == []

    async def test_message_properties_and_reprs(self, engine: Engine) -> None:
        result = await t.request_fields.apply_async(app_id="1234", reply_to="me", argsrepr="A", kwargsrepr="K")
        got = await result.get(timeout=5)
        assert got["properties"]["app_id"] == "1234" and got["properties"]["reply_to"] == "me"
        assert got["properties"]["correlation_id"] == result.id
        assert (got["argsrepr"], got["kwargsrepr"]) == ("A", "K")


class TestConf:
    def test_broker_pool_acquire_timeout_is_accepted_and_defaults_to_none(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert current_app.conf.broker_pool_acquire_timeout is None
        monkeypatch.setattr(current_app.conf, "broker_pool_acquire_timeout", 30)
        assert current_app.conf.broker_pool_acquire_timeout == 30

    def test_a_setting_this_engine_does_not_know_is_refused(self) -> None:
        with pytest.raises(AttributeError):
            current_app.conf.broker_pool_limit = 10  # type: ignore[attr-defined]
