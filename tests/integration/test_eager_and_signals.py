"""Eager runs (``apply()``, ``task_always_eager``), Celery's task signals and class-based tasks.

The eager tests need no engine (an eager run must not touch one); the signal tests run on the
engine over each repository (memory, SQLite and PostgreSQL), as the ``engine`` fixture of ``conftest.py`` gives.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from application.engine import Engine
from domain import canvas as model
from entrypoints.celery_compat import (
    AsyncResult,
    EagerResult,
    MaxRetriesExceededError,
    Task,
    chain,
    chord,
    current_app,
    group,
    signals,
    states,
)
from entrypoints.compat.eager import apply_canvas
from entrypoints.compat.signals import Signal
from tests.integration import eager_signal_tasks as t
from tests.integration.eager_signal_tasks import ExpectedError


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    conf = current_app.conf
    saved = (conf.task_always_eager, conf.task_eager_propagates)
    t.HOOKS.clear()
    t.ATTEMPTS.clear()
    t.STARTED.clear()
    t.RELEASE.clear()
    yield
    conf.task_always_eager, conf.task_eager_propagates = saved
    t.RELEASE.set()


class Recorder:
    """Receivers for every task signal, recording ``(signal name, named arguments)``."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._receivers: list[tuple[Signal, Callable[..., None]]] = []
        for signal in (
            signals.task_prerun,
            signals.task_postrun,
            signals.task_success,
            signals.task_failure,
            signals.task_retry,
            signals.task_revoked,
        ):
            receiver = self._receiver_for(signal)
            signal.connect(receiver, weak=False)
            self._receivers.append((signal, receiver))

    def _receiver_for(self, signal: Signal) -> Callable[..., None]:
        def receive(sender: Any = None, **named: Any) -> None:
            with self._lock:
                self.seen.append((signal.name or "", {"sender": sender, **named}))

        return receive

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)

    def named(self, name: str, task_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            found = [named for signal, named in self.seen if signal == name]
        if task_id is None:
            return found
        return [n for n in found if _task_id(n) == task_id]

    def names(self, task_id: str) -> list[str]:
        with self._lock:
            return [signal for signal, named in self.seen if _task_id(named) == task_id]

    async def wait_for(self, name: str, task_id: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.named(name, task_id):
            assert time.monotonic() < deadline, f"no {name} for {task_id}: {self.seen}"
            await asyncio.sleep(0.005)
        return self.named(name, task_id)[0]


def _task_id(named: dict[str, Any]) -> str | None:
    if "task_id" in named:
        return named["task_id"]  # type: ignore[no-any-return]
    request = named.get("request")
    return None if request is None else request.id  # type: ignore[no-any-return]


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recording = Recorder()
    yield recording
    recording.close()


# -- eager runs --------------------------------------------------------------------------------


class TestApply:
    def test_apply_gives_an_eager_result_with_the_value(self) -> None:
        result = t.add.apply((2, 3))
        assert isinstance(result, EagerResult)
        assert result.get() == 5 and result.result == 5 and result.info == 5
        assert result.state == result.status == states.SUCCESS
        assert result.ready() and result.successful() and not result.failed()
        assert result.children == [] and result.parent is None and result.traceback is None
        assert repr(result) == f"<EagerResult: {result.id}>"

    def test_an_async_task_runs_eagerly_too(self) -> None:
        assert t.mul.apply((6, 7)).get() == 42

    def test_kwargs_task_id_and_retries_are_used(self) -> None:
        result = t.request_ids.apply(task_id="my-id", retries=2)
        assert result.id == "my-id"
        seen = result.get()
        assert seen["id"] == "my-id" and seen["retries"] == 2
        assert t.add.apply(kwargs={"x": 1, "y": 2}).get() == 3

    def test_a_failure_is_stored_and_raised_by_get(self) -> None:
        result = t.fail.apply(("test",))
        assert result.state == states.FAILURE and result.failed() and not result.successful()
        with pytest.raises(ExpectedError):
            result.get()
        error = result.get(propagate=False)
        assert isinstance(error, ExpectedError) and error.args == ("expected to fail", "test")
        assert result.traceback is not None and "ExpectedError" in result.traceback

    def test_throw_raises_at_once(self) -> None:
        with pytest.raises(ExpectedError):
            t.fail.apply(throw=True)

    def test_task_eager_propagates_raises_at_once(self) -> None:
        current_app.conf.task_eager_propagates = True
        with pytest.raises(ExpectedError):
            t.fail.apply()
        assert t.fail.apply(throw=False).failed()

    def test_request_is_eager_with_celerys_ids(self) -> None:
        seen = t.request_ids.apply().get()
        assert seen["is_eager"] is True and seen["called_directly"] is False
        assert seen["parent_id"] is None and seen["root_id"] == seen["id"]

    def test_a_task_applied_inside_an_eager_task_has_it_as_parent(self) -> None:
        seen = t.nested_apply.apply().get()
        assert seen["child"]["parent_id"] == seen["id"]
        assert seen["child"]["root_id"] == seen["id"]

    def test_called_directly_outside_any_run(self) -> None:
        assert t.request_ids()["called_directly"] is True

    def test_an_unknown_task_is_refused(self) -> None:
        with pytest.raises(LookupError):
            apply_canvas(model.Signature(task="no.such.task"))

    def test_an_async_task_cannot_run_eagerly_on_a_running_loop(self) -> None:
        async def inside_a_loop() -> None:
            with pytest.raises(RuntimeError, match="async def task"):
                t.mul.apply((1, 2)).get()

        asyncio.run(inside_a_loop())


class TestEagerRetry:
    def test_retry_runs_again_at_once_with_retries_counted(self) -> None:
        started = time.monotonic()
        assert t.retrying.apply((2,)).get() == 2
        assert time.monotonic() - started < 5  # the 30 s countdown is not waited for

    def test_past_max_retries_the_retry_exc_is_raised(self) -> None:
        result = t.retrying.apply((10,))
        assert result.failed()
        error = result.get(propagate=False)
        assert isinstance(error, ExpectedError) and str(error) == "attempt 3"

    def test_max_retries_of_the_call_is_honoured(self) -> None:
        assert t.retrying.apply((2,), max_retries=1).failed()

    def test_autoretry_for_on_a_class_based_task(self) -> None:
        task = current_app.register_task(t.ClassBasedAutoRetryTask())
        assert task.apply().get() == 1

    def test_autoretry_gives_up_after_retry_kwargs_max_retries(self) -> None:
        task = current_app.register_task(t.AlwaysFailing())
        result = task.apply(("label",))
        assert isinstance(result.get(propagate=False), ValueError)
        assert t.ATTEMPTS["label"] == 3  # the first run and two retries

    def test_retry_without_exc_past_the_limit_is_max_retries_exceeded(self) -> None:
        @current_app.task(name="eager.retry_no_exc", bind=True, max_retries=1)
        def retry_no_exc(self: Any) -> None:
            raise self.retry()

        assert isinstance(retry_no_exc.apply().get(propagate=False), MaxRetriesExceededError)


class TestEagerTaskFeatures:
    def test_update_state_is_recorded_on_the_result_without_an_engine(self) -> None:
        result = t.progress.apply((3,))
        assert result.get() == 3
        assert result.updates == [("PROGRESS", {"done": 1}), ("PROGRESS", {"done": 2}), ("PROGRESS", {"done": 3})]

    def test_update_state_can_be_awaited_in_an_async_task(self) -> None:
        result = t.async_progress.apply()
        assert result.get() == "ok" and result.updates == [("PROGRESS", {"done": 1})]

    def test_replace_runs_the_replacement_and_gives_its_result(self) -> None:
        assert t.replaced.apply((1,)).get() == 12

    def test_link_is_applied_eagerly_with_the_result(self, recorder: Recorder) -> None:
        result = t.add.apply((1, 2), link=t.return_exception.s())
        assert result.get() == 3
        successes = [n for n in recorder.named("task_success") if n["sender"] is t.return_exception]
        assert [n["result"] for n in successes] == [3]

    def test_old_style_link_error_gets_the_failed_task_id(self, recorder: Recorder) -> None:
        result = t.fail.apply(args=("test",), link_error=t.return_exception.s())
        assert result.get(propagate=False).args == ("expected to fail", "test")  # Celery's test_link_error_eager
        successes = [n for n in recorder.named("task_success") if n["sender"] is t.return_exception]
        assert [n["result"] for n in successes] == [result.id]

    def test_new_style_link_error_gets_the_request_and_the_exception(self) -> None:
        result = t.fail.apply(link_error=t.new_style_errback.s())
        assert result.failed()
        assert [("errback", result.id, ("ExpectedError", True))] == t.HOOKS


class TestEagerCanvas:
    def test_a_domain_chain(self) -> None:
        steps: list[model.Canvas] = [
            model.Signature(task="eager.add", args=[1, 2]),
            model.Signature(task="eager.mul", args=[10]),
        ]
        result = apply_canvas(model.Chain(steps=steps))
        assert result.get() == 30
        assert result.parent is not None and result.parent.get() == 3

    def test_a_domain_group_gives_the_list_and_its_members(self) -> None:
        members: list[model.Canvas] = [model.Signature(task="eager.add", args=[i, i]) for i in range(3)]
        result = apply_canvas(model.Group(members=members))
        assert result.get() == [0, 2, 4]
        assert [child.get() for child in result.children] == [0, 2, 4]

    def test_a_domain_chord(self) -> None:
        header: list[model.Canvas] = [model.Signature(task="eager.add", args=[i, 1]) for i in range(3)]
        result = apply_canvas(model.Chord(header=header, body=model.Signature(task="eager.tsum")))
        assert result.get() == 6
        assert result.parent is not None and result.parent.get() == [1, 2, 3]

    def test_compat_chain_group_and_chord_apply(self) -> None:
        assert chain(t.add.s(4, 4), t.add.s(8), t.add.s(16)).apply().get() == 32
        assert group(t.add.s(1, 1), t.mul.s(2, 2)).apply().get() == [2, 4]
        assert chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()).apply().get() == 6

    def test_chord_in_chain_with_args(self) -> None:  # Celery's test_chord_in_chain_with_args, eager half
        c1 = chain(
            chord([t.return_exception.s(), t.return_exception.s()], t.return_exception.s()), t.return_exception.s()
        )
        assert c1.apply(args=(1,)).get() == [1, 1]

    def test_a_failed_step_another_step_needs_is_raised_at_once_as_celerys_chain_apply(self) -> None:
        with pytest.raises(ExpectedError):
            chain(t.fail.s(), t.add.s(1)).apply()

    def test_a_failed_last_step_is_stored(self) -> None:
        result = chain(t.add.s(1, 1), t.fail.s()).apply()
        assert result.failed() and isinstance(result.get(propagate=False), ExpectedError)

    def test_a_failed_group_member_is_stored(self) -> None:
        result = group(t.add.s(1, 1), t.fail.s()).apply()
        assert result.failed()
        assert [child.state for child in result.children] == [states.SUCCESS, states.FAILURE]


class TestAlwaysEager:
    def test_delay_runs_eagerly(self) -> None:
        current_app.conf.task_always_eager = True
        result = t.add.delay(2, 2)
        assert isinstance(result, EagerResult) and result.get() == 4

    def test_task_app_is_current_app(self) -> None:
        assert t.add.app is current_app
        t.chain_inside.app.conf.task_always_eager = True
        assert current_app.conf.task_always_eager is True

    def test_delay_inside_an_eager_task_is_eager_too(self) -> None:
        current_app.conf.task_always_eager = True
        assert t.delay_inside.delay(3).get() == {"type": "EagerResult", "value": 6}

    def test_eager_chain_inside_task(self) -> None:  # Celery's test_eager_chain_inside_task
        t.chain_inside.app.conf.task_always_eager = True
        assert t.chain_inside.apply_async(args=(4, 8), throw=True).get() == 16

    def test_eager_chord_inside_task(self) -> None:  # Celery's test_eager_chord_inside_task
        t.chord_inside.app.conf.task_always_eager = True
        assert t.chord_inside.apply_async(args=(4, 8), throw=True).get() == 24

    async def test_always_eager_bypasses_a_running_engine(self, engine: Engine) -> None:
        current_app.conf.task_always_eager = True
        result = t.always_eager_flag.delay()
        assert isinstance(result, EagerResult) and result.get() is True


# -- signals ------------------------------------------------------------------------------------


class TestSignalClass:
    def test_connect_as_decorator_bare_and_with_a_sender_and_disconnect(self) -> None:
        signal = Signal(name="test")
        calls: list[tuple[str, Any]] = []

        @signal.connect
        def anyone(sender: Any = None, **named: Any) -> str:
            calls.append(("anyone", sender))
            return "a"

        @signal.connect(sender="me")
        def only_me(sender: Any = None, **named: Any) -> str:
            calls.append(("only_me", named["value"]))
            return "b"

        assert signal.send(sender="me", value=1) == [(anyone, "a"), (only_me, "b")]
        assert signal.send(sender="other", value=2) == [(anyone, "a")]
        assert signal.disconnect(only_me, sender="me") is True
        assert signal.send(sender="me", value=3) == [(anyone, "a")]
        assert calls == [("anyone", "me"), ("only_me", 1), ("anyone", "other"), ("anyone", "me")]

    def test_a_receiver_connects_once_per_dispatch_uid(self) -> None:
        signal = Signal(name="test")

        def receiver(**named: Any) -> int:
            return 1

        signal.connect(receiver, dispatch_uid="uid")
        signal.connect(receiver, dispatch_uid="uid")
        assert len(signal.send(sender=None)) == 1
        assert signal.disconnect(dispatch_uid="uid") is True
        assert signal.send(sender=None) == []

    def test_a_receivers_exception_is_logged_and_returned_not_raised(self, caplog: pytest.LogCaptureFixture) -> None:
        signal = Signal(name="test")

        def broken(**named: Any) -> None:
            raise RuntimeError("receiver broke")

        signal.connect(broken)
        with caplog.at_level(logging.ERROR):
            [(receiver, response)] = signal.send(sender=None)
        assert receiver is broken and isinstance(response, RuntimeError)
        assert "receiver broke" in caplog.text

    def test_receivers_are_weak_by_default_as_in_celery(self) -> None:
        signal = Signal(name="test")

        def make() -> None:
            def local(**named: Any) -> None:
                return None

            signal.connect(local)

        make()
        gc.collect()
        assert signal.send(sender=None) == []

    def test_a_receiver_must_take_keyword_arguments(self) -> None:
        with pytest.raises(ValueError, match="keyword arguments"):
            Signal(name="test").connect(lambda sender: None, weak=False)


class TestEagerSignals:
    def test_success_signals_with_celerys_arguments(self, recorder: Recorder) -> None:
        result = t.add.apply((1, 2))
        assert recorder.names(result.id or "") == ["task_prerun", "task_postrun"]
        prerun = recorder.named("task_prerun", result.id)[0]
        assert prerun["sender"] is t.add and prerun["task"] is t.add
        assert list(prerun["args"]) == [1, 2] and prerun["kwargs"] == {}
        postrun = recorder.named("task_postrun", result.id)[0]
        assert postrun["retval"] == 3 and postrun["state"] == states.SUCCESS
        assert [n["result"] for n in recorder.named("task_success") if n["sender"] is t.add] == [3]

    def test_failure_and_retry_signals(self, recorder: Recorder) -> None:
        result = t.retrying.apply((10,))
        retries = recorder.named("task_retry", result.id)
        assert len(retries) == 3
        assert isinstance(retries[0]["reason"].exc, ExpectedError) and retries[0]["request"].is_eager
        [failure] = recorder.named("task_failure", result.id)
        assert isinstance(failure["exception"], ExpectedError) and failure["einfo"].type is ExpectedError
        states_seen = [n["state"] for n in recorder.named("task_postrun", result.id)]
        assert states_seen == ["RETRY", "RETRY", "RETRY", "FAILURE"]


class TestEngineSignals:
    async def test_success(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.add.delay(2, 3)
        assert await result.get(timeout=5) == 5
        postrun = await recorder.wait_for("task_postrun", result.id)
        assert postrun["sender"] is t.add and postrun["retval"] == 5 and postrun["state"] == states.SUCCESS
        prerun = recorder.named("task_prerun", result.id)[0]
        assert list(prerun["args"]) == [2, 3] and prerun["task"] is t.add
        assert 5 in [n["result"] for n in recorder.named("task_success") if n["sender"] is t.add]

    async def test_success_of_an_async_task(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.mul.delay(2, 3)
        assert await result.get(timeout=5) == 6
        assert (await recorder.wait_for("task_postrun", result.id))["state"] == states.SUCCESS

    async def test_failure(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.fail.delay("x")
        with pytest.raises(ExpectedError):
            await result.get(timeout=5)
        failure = await recorder.wait_for("task_failure", result.id)
        assert failure["sender"] is t.fail and isinstance(failure["exception"], ExpectedError)
        assert list(failure["args"]) == ["x"] and failure["kwargs"] == {}
        assert failure["einfo"].exception is failure["exception"] and "ExpectedError" in str(failure["einfo"])
        assert failure["traceback"] is not None

    async def test_retry(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.retry_fast.delay()
        assert await result.get(timeout=5) == 1
        retry = await recorder.wait_for("task_retry", result.id)
        assert retry["sender"] is t.retry_fast and retry["request"].retries == 0
        assert isinstance(retry["reason"].exc, ExpectedError) and retry["einfo"] is not None
        assert [n["state"] for n in recorder.named("task_postrun", result.id)] == ["RETRY", "SUCCESS"]

    async def test_revoked_before_it_ran(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.add.apply_async((1, 1), countdown=60)
        await result.revoke()
        revoked = await recorder.wait_for("task_revoked", result.id)
        assert revoked["sender"] is t.add and revoked["request"].id == result.id
        assert revoked["terminated"] is False and revoked["expired"] is False and revoked["signum"] is None
        assert recorder.named("task_prerun", result.id) == []

    async def test_revoked_while_running(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.async_forever.delay()
        deadline = time.monotonic() + 5
        while not t.STARTED.is_set():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        await result.revoke(terminate=True)
        revoked = await recorder.wait_for("task_revoked", result.id)
        assert revoked["terminated"] is True and revoked["expired"] is False
        assert recorder.named("task_failure", result.id) == []

    async def test_expired(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.add.apply_async((1, 1), countdown=0.2, expires=0.05)
        revoked = await recorder.wait_for("task_revoked", result.id)
        assert revoked["expired"] is True and revoked["terminated"] is False

    async def test_a_hard_time_limit_is_a_failure(self, engine: Engine, recorder: Recorder) -> None:
        result = await t.async_forever.apply_async(time_limit=0.1)
        failure = await recorder.wait_for("task_failure", result.id)
        assert type(failure["exception"]).__name__ == "TimeLimitExceeded"
        assert recorder.named("task_revoked", result.id) == []


class TestEngineErrbacks:
    async def test_a_new_style_errback_gets_a_request_object_and_the_exception(self, engine: Engine) -> None:
        result = await t.fail.apply_async(("x",), link_error=t.new_style_errback.s())
        with pytest.raises(ExpectedError):
            await result.get(timeout=5)
        deadline = time.monotonic() + 5
        while not t.HOOKS:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        assert [("errback", result.id, ("ExpectedError", True))] == t.HOOKS


class TestClassBasedTasks:
    async def test_class_based_task_retried(self, engine: Engine) -> None:  # Celery's test, on the engine
        task = t.ClassBasedAutoRetryTask()
        current_app.register_task(task)
        res = await task.delay()
        assert await res.get(timeout=5) == 1

    def test_class_attributes_are_the_options(self) -> None:
        task = current_app.register_task(t.ClassBasedAutoRetryTask())
        assert task.name == "auto_retry_class_task"
        assert task.definition.autoretry_for == (ValueError,)
        assert task.definition.retry_kwargs == {"max_retries": 1, "countdown": 0}
        assert task.definition.retry_policy.retry_backoff is True
        assert current_app.tasks["auto_retry_class_task"] is task

    def test_a_task_class_without_a_name_is_named_after_it(self) -> None:
        class Unnamed(Task):
            def run(self, x: int) -> int:
                return x

        task = current_app.register_task(Unnamed())
        assert task.name.endswith(".Unnamed") and task.apply((7,)).get() == 7

    def test_a_base_that_is_not_a_task_class_is_refused(self) -> None:
        with pytest.raises(TypeError, match="base"):
            current_app.task(base=object)(lambda: None)

    def test_unknown_options_are_still_refused(self) -> None:
        with pytest.raises(TypeError, match="compression"):
            current_app.task(compression="zlib")(lambda: None)

    def test_base_handlers_eagerly(self) -> None:
        ok = t.with_base.apply(("ok",))
        failed = t.with_base.apply(("fail",))
        retried = t.with_base.apply(("retry",))
        assert isinstance(t.with_base, t.Recording)
        assert retried.get() == "retry:1"
        assert [(hook, task_id) for hook, task_id, _ in t.HOOKS] == [
            ("on_success", ok.id),
            ("after_return", ok.id),
            ("on_failure", failed.id),
            ("after_return", failed.id),
            ("on_retry", retried.id),
            ("on_success", retried.id),
            ("after_return", retried.id),
        ]

    async def test_base_handlers_on_the_engine(self, engine: Engine) -> None:
        ok = await t.with_base.delay("ok")
        assert await ok.get(timeout=5) == "ok:0"
        failed = await t.with_base.delay("fail")
        with pytest.raises(ExpectedError):
            await failed.get(timeout=5)
        assert ("on_success", ok.id, "ok:0") in t.HOOKS
        assert ("after_return", ok.id, "SUCCESS") in t.HOOKS
        assert ("on_failure", failed.id, repr(ExpectedError("with_base failed"))) in t.HOOKS
        assert ("after_return", failed.id, "FAILURE") in t.HOOKS
        assert isinstance(AsyncResult(ok.id).result, str)
