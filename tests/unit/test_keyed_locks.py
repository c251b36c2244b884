"""``KeyedLocks``: the outcomes of one workflow are stored one at a time, those of others meanwhile."""

from __future__ import annotations

import asyncio

import pytest

from application.keyed_locks import KeyedLocks


async def test_one_holder_per_key_others_meanwhile_and_nothing_kept_after() -> None:
    locks = KeyedLocks()
    order: list[str] = []
    release = asyncio.Event()

    async def hold(key: str | None, name: str) -> None:
        async with locks.held(key):
            order.append(f"{name} in")
            if name == "a1":
                await release.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(hold("w1", "a1"))
    await asyncio.sleep(0)
    second = asyncio.create_task(hold("w1", "a2"))  # waits for a1
    other = asyncio.create_task(hold("w2", "b"))  # another workflow: not held up
    free = asyncio.create_task(hold(None, "c"))  # a job of no workflow: no lock at all
    await asyncio.wait_for(asyncio.gather(other, free), 5)
    assert "a2 in" not in order and {"b in", "b out", "c in", "c out"} <= set(order)
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 5)
    assert order.index("a1 out") < order.index("a2 in")
    assert len(locks) == 0


async def test_a_holder_that_fails_lets_the_next_one_in() -> None:
    locks = KeyedLocks()

    async def failing() -> None:
        async with locks.held("w"):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    async with asyncio.timeout(5), locks.held("w"):
        pass
    assert len(locks) == 0
