"""Issue 11, finding 5 (engine side): a canvas's nodes are checked as lone jobs are, at submission."""

from __future__ import annotations

import math

import pytest

from application.engine import Engine
from domain.canvas import Canvas, Chain, Chord, Group, Signature
from domain.errors import InvalidArguments
from tests.integration import compat_tasks


def add(*args: object, **options: object) -> Signature:
    return Signature(task="compat.add", args=list(args), **options)  # type: ignore[arg-type]


BAD_OPTIONS = [
    {"priority": 10**30},
    {"priority": 2**63},
    {"priority": -(2**63) - 1},
    {"max_retries": 10**30},
    {"max_retries": -1},
    {"time_limit": -1.0},
    {"time_limit": math.inf},
    {"time_limit": math.nan},
    {"countdown": -5.0},
]


async def _nothing_stored(engine: Engine) -> None:
    assert (await engine.repo.count_by_state()) == {}


@pytest.mark.parametrize("options", BAD_OPTIONS, ids=lambda o: next(iter(o)))
async def test_an_option_out_of_range_in_any_canvas_node_is_refused_before_anything_is_stored(
    engine: Engine, options: dict[str, object]
) -> None:
    for canvas in (
        Chain(steps=[add(1, 2), add(3, **options)]),
        Group(members=[add(1, 2), add(1, 2, **options)]),
        Chord(header=[add(1, 2)], body=Signature(task="compat.total", **options)),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match=next(iter(options))):
            await engine.jobs.submit_canvas(canvas)
    await _nothing_stored(engine)


@pytest.mark.parametrize("options", BAD_OPTIONS[:-1], ids=lambda o: next(iter(o)))
async def test_the_same_options_are_refused_for_a_lone_job(engine: Engine, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        await engine.jobs.submit(add(1, 2, **options))
    await _nothing_stored(engine)


async def test_options_at_the_edges_of_the_range_are_accepted(engine: Engine) -> None:
    canvas = Chain(steps=[add(1, 2, priority=2**63 - 1, max_retries=0), add(3, priority=-(2**63), time_limit=30.0)])
    workflow = await engine.jobs.submit_canvas(canvas)
    done = await engine.jobs.wait(workflow.id, 5)
    assert done.state == "SUCCESS" and done.result == 6


@pytest.mark.parametrize(
    "canvas",
    [
        Chain(steps=[add(1, 2, 3), add(1)]),  # the first step
        Group(members=[add(1, 2), add(1)]),  # a member of a group it starts with
        Chord(header=[add(1, 2), add()], body=Signature(task="compat.total")),  # a header member
        Chain(steps=[add(1, 2), add(5, immutable=True)]),  # an immutable later step
        Chain(steps=[add(1, 2), Group(members=[add(1), add(1, 2, 3, immutable=True)])]),
    ],
    ids=["first-step", "group-member", "chord-header", "immutable-step", "immutable-in-group"],
)
async def test_a_step_whose_known_arguments_do_not_fit_its_task_is_refused(engine: Engine, canvas: Canvas) -> None:
    with pytest.raises(InvalidArguments, match=r"compat\.add"):
        await engine.jobs.submit_canvas(canvas)
    await _nothing_stored(engine)
    assert compat_tasks.CALLS == []


async def test_later_steps_are_checked_with_their_predecessors_result_still_to_come(engine: Engine) -> None:
    workflow = await engine.jobs.submit_canvas(Chain(steps=[add(1, 2), add(10), add(100)]))
    done = await engine.jobs.wait(workflow.id, 5)
    assert done.state == "SUCCESS" and done.result == 113
