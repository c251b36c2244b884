"""The Celery programming model through the public API, on every repository (memory, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from application.engine import Engine
from application.ports import JobFilter
from entrypoints.celery_compat import (
    AsyncResult,
    GroupResult,
    UnknownResultError,
    chain,
    chord,
    group,
    signature,
    states,
)
from tests.integration.compat_tasks import (
    CALLS,
    RELEASE,
    add,
    blocker,
    boom,
    echo,
    exits,
    explicit_retry,
    fan_group,
    fan_out,
    flaky,
    forever,
    limited,
    mul,
    not_json,
    own_timeout,
    progress,
    record_order,
    sleepy,
    submits_from_thread,
    sync_forever,
    sync_progress,
    total,
)

pytestmark = pytest.mark.usefixtures("engine")


async def wait_for_state(result: AsyncResult, wanted: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while result.state != wanted:
        assert time.monotonic() < deadline, f"{result} stayed {result.state}, wanted {wanted}"
        await asyncio.sleep(0.005)


class TestDelay:
    async def test_delay_returns_a_handle_whose_get_gives_the_result(self) -> None:
        result = await add.delay(2, 3)
        assert await result.get(timeout=5) == 5
        assert result.state == states.SUCCESS
        assert result.ready() and result.successful() and not result.failed()
        assert result.result == 5

    async def test_async_and_sync_tasks_both_run(self) -> None:
        assert await (await mul.delay(6, 7)).get(timeout=5) == 42
        assert await (await add.apply_async((6, 7))).get(timeout=5) == 13

    async def test_kwargs_reach_the_task(self) -> None:
        result = await echo.apply_async(args=(1,), kwargs={"name": "x"})
        assert await result.get(timeout=5) == {"args": [1], "kwargs": {"name": "x"}}

    async def test_countdown_delays_the_start(self, engine: Engine) -> None:
        result = await add.apply_async((1, 1), countdown=0.3)
        assert result.state == states.PENDING
        assert await result.get(timeout=5) == 2
        job = await engine.jobs.get(result.id)
        assert job.started_at is not None and job.started_at - job.created_at >= 0.29

    async def test_eta_as_datetime_delays_the_start(self, engine: Engine) -> None:
        eta = datetime.now(UTC) + timedelta(seconds=0.3)
        result = await add.apply_async((1, 2), eta=eta)
        assert await result.get(timeout=5) == 3
        job = await engine.jobs.get(result.id)
        assert job.started_at is not None and job.started_at >= eta.timestamp() - 0.001

    async def test_higher_priority_runs_first(self, engine: Engine) -> None:
        engine.dispatcher.max_concurrent = 1
        gate = await blocker.delay()
        await wait_for_state(gate, states.STARTED)
        low = await record_order.apply_async(("low",), priority=1)
        high = await record_order.apply_async(("high",), priority=9)
        first = await record_order.apply_async(("default",))
        RELEASE.set()
        for handle in (low, high, first):
            await handle.get(timeout=5)
        assert [args for name, args in CALLS if name == "order"] == ["high", "low", "default"]

    async def test_non_json_arguments_are_refused_at_delay_with_a_type_error(self) -> None:
        with pytest.raises(TypeError, match="not JSON-serializable"):
            add.delay(object(), 1)
        with pytest.raises(TypeError, match="JSON keys are strings"):
            echo.apply_async(kwargs={"x": {1: 2}})

    async def test_arguments_that_do_not_fit_the_task_are_refused_at_delay(self) -> None:
        with pytest.raises(TypeError, match=r"compat.add\(x: int, y: int\) -> int: too many positional arguments"):
            add.delay(1, 2, 3)
        with pytest.raises(TypeError, match="missing a required argument: 'steps'"):
            sync_progress.delay()

    async def test_a_non_json_result_fails_the_job_and_the_engine_goes_on(self) -> None:
        bad = await not_json.delay()
        with pytest.raises(TypeError, match="not JSON-serializable"):
            await bad.get(timeout=5)
        assert bad.state == states.FAILURE
        assert await (await add.delay(1, 1)).get(timeout=5) == 2

    async def test_a_sync_task_can_submit_and_wait_from_its_thread(self) -> None:
        assert await (await submits_from_thread.delay(41)).get(timeout=10) == 42

    async def test_system_exit_in_a_task_fails_only_that_job(self) -> None:
        result = await exits.delay()
        error = await result.get(timeout=5, propagate=False)
        assert type(error).__name__ == "SystemExit"
        assert not isinstance(error, SystemExit), "re-raising it must not stop the caller's process"
        assert await (await add.delay(2, 2)).get(timeout=5) == 4


class TestResults:
    async def test_a_failure_is_re_raised_with_its_type_and_message(self) -> None:
        result = await boom.delay(1)
        with pytest.raises(ValueError, match=r"boom \(1,\)"):
            await result.get(timeout=5)
        assert result.state == states.FAILURE
        assert result.failed() and result.ready() and not result.successful()
        assert isinstance(result.info, ValueError)
        assert result.traceback is not None and "ValueError" in result.traceback

    async def test_propagate_false_returns_the_error(self) -> None:
        result = await boom.delay(2)
        error = await result.get(timeout=5, propagate=False)
        assert isinstance(error, ValueError)

    async def test_progress_is_visible_as_a_custom_state_with_its_meta(self, engine: Engine) -> None:
        subscription = engine.bus.subscribe(None)
        try:
            result = await progress.delay(3, 0.05)
            await wait_for_state(result, "PROGRESS")
            assert result.info["total"] == 3
            assert await result.get(timeout=5) == 3
            seen = []
            while (event := await subscription.next(0.5)) is not None:
                if event.id == result.id:
                    seen.append((event.state, event.progress.meta["done"] if event.progress else None))
        finally:
            subscription.close()
        assert seen == [
            ("PENDING", None),
            ("STARTED", None),
            ("PROGRESS", 0),
            ("PROGRESS", 1),
            ("PROGRESS", 2),
            ("SUCCESS", None),
        ]

    async def test_update_state_works_from_a_sync_task(self) -> None:
        result = await sync_progress.delay(3)
        assert await result.get(timeout=5) == result.id

    async def test_an_unknown_id_is_reported_unknown_not_pending(self) -> None:
        result = AsyncResult("no-such-id")
        assert result.state == states.UNKNOWN
        assert not result.ready()
        with pytest.raises(UnknownResultError):
            await result.get(timeout=1)

    async def test_get_times_out(self) -> None:
        result = await forever.delay()
        with pytest.raises(TimeoutError):
            await result.get(timeout=0.1)
        await result.revoke()


class TestChain:
    async def test_each_result_is_prepended_to_the_next_steps_args(self) -> None:
        result = await chain(add.s(1, 2), mul.s(10), add.s(5)).apply_async()
        assert await result.get(timeout=5) == 35

    async def test_pipe_builds_the_same_chain(self) -> None:
        result = await (add.s(1, 2) | mul.s(10) | add.s(5)).apply_async()
        assert await result.get(timeout=5) == 35

    async def test_an_immutable_signature_ignores_the_parent_result(self) -> None:
        result = await chain(add.s(1, 2), add.si(10, 10), echo.s()).apply_async()
        assert await result.get(timeout=5) == {"args": [20], "kwargs": {}}

    async def test_a_failure_stops_the_chain_and_later_steps_never_run(self) -> None:
        result = await chain(add.s(1, 1), boom.s(), echo.s("never")).apply_async()
        with pytest.raises(ValueError, match="boom"):
            await result.get(timeout=5)
        assert result.state == states.FAILURE
        assert ("echo", (None, "never")) not in CALLS
        assert [name for name, _ in CALLS] == ["add", "boom"]

    async def test_signature_by_name_works_like_the_task_s(self) -> None:
        result = await chain(signature("compat.add", args=(2, 2)), signature("compat.mul", args=(3,))).apply_async()
        assert await result.get(timeout=5) == 12

    async def test_a_none_result_is_still_passed_on(self) -> None:
        result = await chain(echo.s(), echo.s()).apply_async()
        assert await result.get(timeout=5) == {"args": [{"args": [], "kwargs": {}}], "kwargs": {}}


class TestGroup:
    async def test_results_come_in_group_order_not_completion_order(self) -> None:
        result = await group(sleepy.s(i, 0.05 * (3 - i)) for i in range(4)).apply_async()
        assert isinstance(result, GroupResult)
        assert await result.get(timeout=5) == [0, 1, 2, 3]
        finished = [value for name, value in CALLS if name == "sleepy"]
        assert finished != [0, 1, 2, 3]

    async def test_an_empty_group_gives_an_empty_list(self) -> None:
        assert await (await group([]).apply_async()).get(timeout=5) == []

    async def test_a_member_failure_fails_the_group(self) -> None:
        result = await group(add.s(1, 1), boom.s(2)).apply_async()
        with pytest.raises(ValueError, match="boom"):
            await result.get(timeout=5)


class TestChord:
    async def test_the_body_gets_the_header_results_in_header_order(self) -> None:
        result = await chord([sleepy.s(i, 0.02 * (5 - i)) for i in range(5)])(echo.s())
        assert await result.get(timeout=5) == {"args": [[0, 1, 2, 3, 4]], "kwargs": {}}

    async def test_chord_with_body_argument_and_apply_async(self) -> None:
        result = await chord([add.s(i, i) for i in range(10)], total.s()).apply_async()
        assert await result.get(timeout=5) == 90

    async def test_a_header_failure_fails_the_chord_without_calling_the_body(self) -> None:
        result = await chord([add.s(1, 1), boom.s(7)], total.s()).apply_async()
        # As Celery's get(): the failed member's own exception, with its arguments.
        with pytest.raises(ValueError, match=r"boom \(7,\)"):
            await result.get(timeout=5)
        assert not any(name == "total" for name, _ in CALLS)
        assert result.state == states.FAILURE

    async def test_the_body_runs_once(self) -> None:
        result = await chord([add.s(i, 0) for i in range(20)], total.s()).apply_async()
        assert await result.get(timeout=5) == sum(range(20))
        assert sum(1 for name, _ in CALLS if name == "total") == 1

    async def test_a_group_followed_by_a_task_in_a_chain_is_a_chord(self) -> None:
        result = await chain(add.s(1, 1), group(mul.s(2), mul.s(3)), total.s()).apply_async()
        assert await result.get(timeout=5) == 10
        failing = await (group(add.s(1, 1), boom.s()) | total.s()).apply_async()
        with pytest.raises(ValueError, match="boom"):
            await failing.get(timeout=5)


class TestNesting:
    async def test_a_group_of_chains(self) -> None:
        result = await group(chain(add.s(i, 1), mul.s(2)) for i in range(3)).apply_async()
        assert await result.get(timeout=5) == [2, 4, 6]

    async def test_a_chain_of_chords(self) -> None:
        canvas = chain(
            chord([add.s(1, 1), add.s(2, 2)], total.s()),
            mul.s(10),
            chord([add.si(0, 1), add.si(0, 2)], total.s()),
        )
        assert await (await canvas.apply_async()).get(timeout=5) == 3

    async def test_a_chord_whose_members_are_chains_and_groups(self) -> None:
        header = [chain(add.s(1, 1), mul.s(5)), group(add.s(1, 0), add.s(2, 0))]
        result = await chord(header, echo.s()).apply_async()
        # Celery flattens a group inside a chord header into the header.
        assert await result.get(timeout=5) == {"args": [[10, 1, 2]], "kwargs": {}}


class TestRetries:
    async def test_autoretry_for_retries_and_counts_in_request_retries(self) -> None:
        result = await flaky.delay(2)
        assert await result.get(timeout=5) == 2
        assert [value for name, value in CALLS if name == "flaky"] == [0, 1, 2]

    async def test_retries_stop_at_max_retries_with_the_original_error(self) -> None:
        result = await flaky.delay(10)
        with pytest.raises(ConnectionError):
            await result.get(timeout=5)
        assert [value for name, value in CALLS if name == "flaky"] == [0, 1, 2, 3]

    async def test_self_retry_with_countdown_then_max_retries(self) -> None:
        result = await explicit_retry.delay()
        with pytest.raises(KeyError):
            await result.get(timeout=5)
        assert [value for name, value in CALLS if name == "explicit_retry"] == [0, 1, 2]

    async def test_a_failed_job_can_be_retried_by_request(self, engine: Engine) -> None:
        result = await boom.delay(1)
        await result.get(timeout=5, propagate=False)
        await engine.jobs.retry(result.id)
        await result.get(timeout=5, propagate=False)
        assert sum(1 for name, _ in CALLS if name == "boom") == 2


class TestReplace:
    async def test_a_task_fans_out_and_its_result_is_the_canvas_result(self) -> None:
        result = await fan_out.delay(5)
        assert await result.get(timeout=5) == 20
        assert result.state == states.SUCCESS

    async def test_a_replaced_step_inside_a_chain_passes_the_canvas_result_on(self) -> None:
        result = await chain(fan_group.s([1, 2, 3]), total.s()).apply_async()
        assert await result.get(timeout=5) == 60

    async def test_jobs_of_a_replacement_are_listed_under_the_outer_workflow(self, engine: Engine) -> None:
        result = await chain(fan_group.s([1, 2, 3]), total.s()).apply_async()
        await result.get(timeout=5)
        page = await engine.jobs.list(JobFilter(workflow_id=result.id), limit=50)
        assert sorted(job.task for job in page.items) == [
            "compat.fan_group",
            "compat.mul",
            "compat.mul",
            "compat.mul",
            "compat.total",
        ]
        assert {job.root_id for job in page.items if job.task == "compat.mul"} == {result.id}


class TestRevoke:
    async def test_revoking_a_queued_job_means_it_never_runs(self) -> None:
        result = await add.apply_async((1, 1), countdown=60)
        await result.revoke()
        assert result.state == states.REVOKED
        with pytest.raises(Exception, match="revoked"):
            await result.get(timeout=1)
        assert not CALLS

    async def test_revoking_a_running_async_task_cancels_it(self) -> None:
        result = await forever.delay()
        await wait_for_state(result, states.STARTED)
        await result.revoke(terminate=True)
        assert result.state == states.REVOKED

    async def test_revoking_a_running_sync_task_stops_it_at_its_next_update_state(self) -> None:
        result = await sync_forever.delay()
        await wait_for_state(result, "PROGRESS")
        await result.revoke(terminate=True)
        assert result.state == states.REVOKED

    async def test_revoking_a_workflow_stops_its_remaining_steps(self) -> None:
        result = await chain(forever.s(), add.s(1)).apply_async()
        deadline = time.monotonic() + 5
        while ("forever", None) not in CALLS:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        await result.revoke()
        assert result.state == states.REVOKED
        assert not any(name == "add" for name, _ in CALLS)

    async def test_revoking_a_finished_job_is_harmless_as_in_celery(self) -> None:
        result = await add.delay(1, 1)
        await result.get(timeout=5)
        await result.revoke()
        assert result.state == states.SUCCESS and await result.get(timeout=5) == 2

    async def test_revoking_a_running_job_without_terminate_lets_it_finish(self) -> None:
        result = await sleepy.delay(7, 0.3)
        await wait_for_state(result, states.STARTED)
        await result.revoke()
        assert await result.get(timeout=5) == 7
        assert result.state == states.SUCCESS


class TestTimeLimit:
    async def test_a_task_past_its_time_limit_fails_with_time_limit_exceeded(self) -> None:
        result = await limited.delay()
        with pytest.raises(Exception, match="time limit") as raised:
            await result.get(timeout=5)
        assert type(raised.value).__name__ == "TimeLimitExceeded"

    async def test_a_tasks_own_timeout_error_is_not_mistaken_for_the_limit(self) -> None:
        error = await (await own_timeout.delay()).get(timeout=5, propagate=False)
        assert isinstance(error, TimeoutError)
        assert "upstream" in str(error)

    async def test_apply_async_time_limit_overrides_the_task(self) -> None:
        result = await forever.apply_async(time_limit=0.1)
        error = await result.get(timeout=5, propagate=False)
        assert type(error).__name__ == "TimeLimitExceeded"


class TestHandles:
    async def test_a_canvas_id_turns_back_into_a_handle(self) -> None:
        result = await chain(add.s(1, 1), add.s(1)).apply_async()
        again = AsyncResult(result.id)
        assert await again.get(timeout=5) == 3
        assert again.state == states.SUCCESS

    async def test_concurrent_submissions_all_complete(self) -> None:
        handles = await asyncio.gather(*(add.delay(i, i) for i in range(200)))
        results = await asyncio.gather(*(handle.get(timeout=10) for handle in handles))
        assert results == [2 * i for i in range(200)]
