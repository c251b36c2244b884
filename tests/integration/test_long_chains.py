"""Issue 11, finding 9: a chain advances in time independent of its length (memory repository, async no-op).

Times are the CPU time of the event loop's thread (where an async step and the engine's work for it run), so
threads that earlier tests left running do not skew the comparison: with the whole process's CPU time, CI once
measured 0.075 ms per step at the start and 0.435 ms at the end. A thread's CPU time still grows when another
process keeps the other CPU busy (caches, frequency), so ``make test`` runs this test alone (``serial``).
"""

from __future__ import annotations

import time

import pytest

from entrypoints.celery_compat import chain, embedded_engine
from tests.integration import limit_tasks
from tests.integration.limit_tasks import step

LONG = 9_999  # a chain node and its steps: the most a canvas holds (10,000 nodes)
SHORT = 1_000


async def _run_chain(steps: int) -> tuple[float, list[float]]:
    limit_tasks.STEP_TIMES.clear()
    started = time.thread_time()
    result = await chain(*(step.s() for _ in range(steps))).apply_async()
    assert await result.get(timeout=600) == 0
    return time.thread_time() - started, list(limit_tasks.STEP_TIMES)


@pytest.mark.serial  # compares CPU times: make test runs it alone, beside no other worker
async def test_a_long_chain_costs_the_same_per_step_at_its_end_as_at_its_start() -> None:
    async with embedded_engine(task_modules=["tests.integration.limit_tasks"]):
        await _run_chain(50)  # warm up
        short, _ = await _run_chain(SHORT)
        long, times = await _run_chain(LONG)
    assert len(times) == LONG
    first = (times[SHORT] - times[0]) / SHORT
    last = (times[-1] - times[-1 - SHORT]) / SHORT
    print(
        f"{SHORT}-step chain {short:.2f} s, {LONG}-step chain {long:.2f} s ({long / short:.1f}x); "
        f"per step: first {SHORT} {first * 1e3:.3f} ms, last {SHORT} {last * 1e3:.3f} ms"
    )
    # Quadratic (re-planning the whole chain per step): the last steps cost ~15x the first (0.28 ms, 4.2 ms).
    assert last < 2 * first, f"the last {SHORT} steps cost {last * 1e3:.3f} ms each, the first {first * 1e3:.3f} ms"
    assert long < 2 * 10 * short * LONG / 10_000, f"{LONG} steps took {long:.2f} s, {SHORT} steps {short:.2f} s"
