"""Each silent divergence from Celery that issue 10 listed, pinned to Celery's documented behaviour.

Every test here failed on the code before the Celery drop-in work (a wrong value, no error); they run
on memory, SQLite and PostgreSQL through the public API.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from application.engine import Engine
from entrypoints.celery_compat import AsyncResult, chain, group, signature, states
from tests.integration import divergence_tasks as tasks
from tests.integration.divergence_tasks import (
    bad_value,
    concat,
    forever_retries,
    record,
    report_other,
    request_view,
    retry_with_eta,
    retry_with_new_args,
    soft_guarded,
    wait_gate,
)
from tests.support.storage import blocking_access

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture(autouse=True)
def _fresh() -> None:
    tasks.SEEN.clear()
    tasks.GATE.clear()


async def until(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class TestPartialsArePrepended:
    async def test_delay_on_a_partial_prepends(self) -> None:
        assert await (await concat.s("b").delay("a")).get(timeout=5) == "ab"

    async def test_apply_async_args_are_prepended(self) -> None:
        assert await (await concat.s("b").apply_async(("a",))).get(timeout=5) == "ab"

    async def test_clone_args_are_prepended(self) -> None:
        assert await (await concat.s("c").clone(("a", "b")).delay()).get(timeout=5) == "abc"

    async def test_an_immutable_signature_ignores_extra_arguments(self) -> None:
        assert await (await concat.si("a", "b").delay("x")).get(timeout=5) == "ab"
        assert await (await concat.si("a", "b").apply_async(("x",), {"c": "z"})).get(timeout=5) == "ab"

    async def test_an_immutable_step_ignores_its_predecessor(self) -> None:
        result = await (concat.s("a", "b") | concat.si("x", "y")).apply_async()
        assert await result.get(timeout=5) == "xy"


class TestCanvasApplyAsync:
    async def test_chain_args_and_kwargs_go_to_the_first_step(self) -> None:
        result = await chain(concat.s("b"), concat.s("c")).apply_async(("a",), {"c": "!"})
        assert await result.get(timeout=5) == "ab!c"

    async def test_group_args_go_to_every_member(self) -> None:
        result = await group(concat.s("1"), concat.s("2")).apply_async(("x",))
        assert await result.get(timeout=5) == ["x1", "x2"]

    async def test_countdown_on_a_canvas_delays_its_first_step(self) -> None:
        started = time.monotonic()
        result = await chain(concat.s("a", "b"), concat.s("c")).apply_async(countdown=0.4)
        assert result.state == states.PENDING
        assert await result.get(timeout=5) == "abc"
        assert time.monotonic() - started >= 0.4

    async def test_queue_on_a_canvas_reaches_its_tasks(self) -> None:
        result = await chain(request_view.si()).apply_async(queue="reports")
        assert (await result.get(timeout=5))["queue"] == "reports"

    async def test_link_on_a_canvas_calls_back_with_its_result(self) -> None:
        await (await chain(concat.s("a", "b")).apply_async(link=record.s("linked"))).get(timeout=5)
        await until(lambda: tasks.SEEN)
        assert tasks.SEEN == [(("ab", "linked"), {})]

    @pytest.mark.parametrize("option", ["exchange", "rate_limit", "stamped_headers", "compression"])
    async def test_an_unimplemented_option_is_a_type_error_never_dropped(self, option: str) -> None:
        with pytest.raises(TypeError, match=option):
            concat.apply_async(("a", "b"), **{option: "x"})
        with pytest.raises(TypeError, match=option):
            chain(concat.s("a", "b"), concat.s("c")).apply_async(**{option: "x"})
        with pytest.raises(TypeError, match=option):
            signature("div.concat", args=("a", "b"), **{option: "x"})


class TestTaskLevel:
    async def test_retry_with_args_runs_again_with_the_new_arguments(self) -> None:
        assert await (await retry_with_new_args.delay(0)).get(timeout=5) == 3

    async def test_retry_with_eta_waits_until_that_eta(self) -> None:
        eta = time.time() + 0.3
        result = await retry_with_eta.delay(eta)
        assert await result.get(timeout=5) == eta
        assert time.time() >= eta

    async def test_max_retries_none_retries_past_the_default_of_three(self) -> None:
        assert await (await forever_retries.delay(5)).get(timeout=5) == 5

    async def test_update_state_with_another_task_id_changes_that_job(self, engine: Engine) -> None:
        target = await wait_gate.delay(1)
        await until(lambda: blocking_access(engine.repo).peek(target.id).state == "STARTED")
        other = await report_other.delay(target.id)
        assert await other.get(timeout=5) == target.id
        assert target.state == "NUDGED" and target.info == {"by": other.id}
        tasks.GATE.set()
        assert await target.get(timeout=5) == 1

    async def test_revoke_lets_a_running_task_finish_unless_terminate(self, engine: Engine) -> None:
        running = await wait_gate.delay(7)
        await until(lambda: blocking_access(engine.repo).peek(running.id).state == "STARTED")
        await running.revoke()
        tasks.GATE.set()
        assert await running.get(timeout=5) == 7

    async def test_revoking_a_finished_task_is_harmless(self) -> None:
        done = await concat.delay("a", "b")
        await done.get(timeout=5)
        await done.revoke()
        assert done.state == states.SUCCESS

    async def test_failed_is_false_for_a_revoked_task(self) -> None:
        queued = await concat.apply_async(("a", "b"), countdown=60)
        await queued.revoke()
        assert queued.state == states.REVOKED and queued.ready() and not queued.failed()

    async def test_a_running_task_reports_pending_without_track_started(self, engine: Engine) -> None:
        running = await wait_gate.delay(1)
        await until(lambda: blocking_access(engine.repo).peek(running.id).state == "STARTED")
        assert running.state == states.PENDING
        tasks.GATE.set()
        await running.get(timeout=5)

    async def test_request_eta_is_none_without_an_eta(self) -> None:
        assert (await (await request_view.delay()).get(timeout=5))["eta"] is None

    async def test_root_and_parent_ids_follow_a_chain(self) -> None:
        first = request_view.si()
        first.freeze()
        result = await chain(first, request_view.si()).apply_async()
        second = await result.get(timeout=5)
        assert second["root_id"] == first.id and second["parent_id"] == first.id
        assert result.parent is not None and result.parent.id == first.id

    async def test_exceptions_keep_their_arguments(self) -> None:
        error = await (await bad_value.delay()).get(timeout=5, propagate=False)
        assert isinstance(error, ValueError) and error.args == ("bad value", 42)

    async def test_a_handle_rebuilt_from_a_chains_id_waits_for_the_whole_chain(self) -> None:
        result = await chain(concat.s("a", "b"), wait_gate.s()).apply_async()
        again = AsyncResult(result.id)
        assert again.state == states.PENDING
        tasks.GATE.set()
        assert await again.get(timeout=5) == "ab"


class TestSoftTimeLimit:
    async def test_a_sync_task_gets_soft_time_limit_exceeded_inside_and_can_recover(self) -> None:
        assert await (await soft_guarded.delay(0.6)).get(timeout=5) == "caught"

    async def test_a_sync_task_finishing_within_its_soft_limit_is_not_interrupted(self) -> None:
        assert await (await soft_guarded.delay(0.01)).get(timeout=5) == "finished"
        assert await (await concat.delay("a", "b")).get(timeout=5) == "ab"


class TestCanvasPrimitives:
    async def test_map_calls_the_task_with_each_item_in_one_job(self) -> None:
        result = await record.map(["x", "y"]).apply_async()
        assert await result.get(timeout=5) == [[["x"], {}], [["y"], {}]]

    async def test_starmap_spreads_each_item_as_arguments(self) -> None:
        assert await (await concat.starmap([("a", "b"), ("c", "d")]).apply_async()).get(timeout=5) == ["ab", "cd"]

    async def test_chunks_run_parts_of_n_items_as_a_group(self) -> None:
        result = await concat.chunks([(str(i), "x") for i in range(5)], 2).apply_async()
        assert await result.get(timeout=5) == [["0x", "1x"], ["2x", "3x"], ["4x"]]

    async def test_every_canvas_survives_json_and_from_dict(self) -> None:
        import msgspec

        from entrypoints.celery_compat import Signature, chord

        canvas = chain(concat.s("a", "b"), group(concat.s("1"), concat.s("2")), record.s())
        canvas.link_error(record.si("failed"))
        for original in (canvas, chord([concat.s("a", "b")], record.s()), concat.chunks([("a", "b")], 1)):
            as_json = msgspec.json.encode(original)
            rebuilt = Signature.from_dict(msgspec.json.decode(as_json))
            assert type(rebuilt) is type(original) and msgspec.json.encode(rebuilt) == as_json

    async def test_a_canvas_is_callable_as_apply_async(self) -> None:
        assert await (await chain(concat.s("a", "b"), concat.s("c"))()).get(timeout=5) == "abc"


class TestChildren:
    async def test_a_steps_children_are_what_it_started(self, engine: Engine) -> None:
        first = concat.s("a", "b")
        first.freeze()
        result = await chain(first, concat.s("c")).apply_async(link=record.s())
        assert await result.get(timeout=5) == "abc"
        await until(lambda: tasks.SEEN)
        assert [child.id for child in AsyncResult(first.id).children] == [result.id]
        [callback] = AsyncResult(result.id).children
        assert blocking_access(engine.repo).peek(callback.id).task == "div.record"


class TestGivenIds:
    async def test_the_id_of_a_job_still_running_is_refused(self, engine: Engine) -> None:
        from domain.errors import IdInUse

        running = await wait_gate.apply_async((1,), task_id="busy-id")
        await until(lambda: blocking_access(engine.repo).peek(running.id).state == "STARTED")
        with pytest.raises(IdInUse):
            await concat.apply_async(("x", "y"), task_id="busy-id")
        with pytest.raises(IdInUse):
            await chain(concat.s("x", "y").set(task_id="busy-id"), concat.s("z")).apply_async()
        tasks.GATE.set()
        assert await running.get(timeout=5) == 1

    async def test_the_id_of_a_finished_job_may_be_given_again_and_replaces_it(self) -> None:
        first = await concat.apply_async(("a", "b"), task_id="reused-id")
        assert await first.get(timeout=5) == "ab"
        again = await concat.apply_async(("c", "d"), task_id="reused-id")
        assert await again.get(timeout=5) == "cd"  # as Celery's backend overwrites the stored result
        frozen = concat.s("e", "f")
        frozen.freeze()
        for _ in range(2):  # a frozen canvas applied twice, as Celery's own suite does
            assert await (await chain(frozen, concat.s("g")).apply_async()).get(timeout=5) == "efg"
