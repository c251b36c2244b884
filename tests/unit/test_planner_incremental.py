"""Issue 11, finding 9: ``plan_after`` (only the nodes above a finished job) answers exactly as ``plan``."""

from __future__ import annotations

import gc
import random
import time
from typing import Any

import pytest

from domain.canvas import Canvas, Chain, Chord, Group, Signature, chain_of
from domain.job import ErrorInfo
from domain.planner import LeafOutcome, plan, plan_after
from domain.states import JobState


def _random_canvas(rng: random.Random, depth: int = 0) -> Canvas:
    kind = rng.random() if depth < 4 else 0.0
    if kind < 0.45:
        return Signature(task=f"t{rng.randrange(100)}", args=[rng.randrange(10)], immutable=rng.random() < 0.2)
    width = rng.randrange(0 if kind > 0.9 else 1, 4)
    children = [_random_canvas(rng, depth + 1) for _ in range(max(width, 1))]
    if kind < 0.7:
        return Chain(steps=children)
    if kind < 0.85:
        return Group(members=children[:width], id=f"g{rng.randrange(1000)}")
    return Chord(header=children[:width], body=_random_canvas(rng, depth + 1), id=f"c{rng.randrange(1000)}")


def _run(canvas: Canvas, rng: random.Random, fail_rate: float) -> int:
    """Drive a workflow to its end in a random order, checking plan_after against plan at each step."""
    outcomes: dict[str, LeafOutcome] = {}
    first = plan(canvas, outcomes)
    running = {leaf.path: leaf for leaf in first.ready}
    for leaf in first.ready:
        outcomes[leaf.path] = LeafOutcome(job_id=leaf.path, task=leaf.signature.task, state=JobState.STARTED)
    checks = 0
    finished = first.finished
    while running and not finished:
        path = rng.choice(sorted(running))
        leaf = running.pop(path)
        if rng.random() < fail_rate:
            error = ErrorInfo(type="ValueError", message=path)
            outcomes[path] = LeafOutcome(job_id=path, task=leaf.signature.task, state=JobState.FAILURE, error=error)
        else:
            result: Any = [path, leaf.args[:2]]
            outcomes[path] = LeafOutcome(job_id=path, task=leaf.signature.task, state=JobState.SUCCESS, result=result)
        expected = plan(canvas, outcomes)
        got = plan_after(canvas, outcomes, path)
        assert got == expected, (canvas, path)
        checks += 1
        for ready in got.ready:
            running[ready.path] = ready
            outcomes[ready.path] = LeafOutcome(job_id=ready.path, task=ready.signature.task, state=JobState.STARTED)
        finished = got.finished
    return checks


def test_plan_after_gives_the_same_plan_as_plan_on_random_canvases_and_completion_orders() -> None:
    rng = random.Random(11)
    checks = 0
    for _ in range(600):
        canvas = _random_canvas(rng)
        checks += _run(canvas, rng, fail_rate=0.0 if rng.random() < 0.6 else 0.1)
    assert checks > 2000


def test_plan_after_on_the_issues_canvas_and_chords_of_chains() -> None:
    rng = random.Random(5)
    canvases = [
        chain_of(
            [Signature(task="echo", args=["x"]), *(Group(members=[Signature(task="echo")] * 4) for _ in range(5))]
        ),
        Chord(header=[Chain(steps=[Signature(task="a")] * 5) for _ in range(3)], body=Signature(task="sum")),
        Group(members=[Chain(steps=[Signature(task="a")] * 3), Chord(header=[], body=Signature(task="b"))]),
    ]
    for canvas in canvases:
        for _ in range(20):
            _run(canvas, rng, fail_rate=0.0)


@pytest.mark.serial  # compares CPU times: make test runs it alone, beside no other worker
def test_advancing_a_chain_costs_the_same_at_its_start_and_at_its_end() -> None:
    """plan() walks the finished steps of a chain (O(n) per step); plan_after() does not. Measured in this
    thread's CPU time, which other processes and threads on a busy machine do not inflate."""
    steps = 10_000
    canvas = Chain(steps=[Signature(task="step") for _ in range(steps)])
    outcomes: dict[str, LeafOutcome] = {}

    def finish(index: int) -> None:
        outcomes[str(index)] = LeafOutcome(job_id=str(index), task="step", state=JobState.SUCCESS, result=0)
        ready = plan_after(canvas, outcomes, str(index)).ready
        if index + 1 < steps:
            assert [leaf.path for leaf in ready] == [str(index + 1)]
            outcomes[str(index + 1)] = LeafOutcome(job_id="x", task="step", state=JobState.STARTED)

    gc.collect()
    gc.disable()  # a full collection of what earlier tests left would land in one of the two measures
    try:
        started = time.thread_time()
        for index in range(1000):
            finish(index)
        first = time.thread_time() - started
        for index in range(1000, steps - 1000):
            finish(index)
        started = time.thread_time()
        for index in range(steps - 1000, steps):
            finish(index)
        last = time.thread_time() - started
    finally:
        gc.enable()
    assert last < 3 * first + 0.05, f"the last 1,000 steps took {last:.3f} s, the first {first:.3f} s"
