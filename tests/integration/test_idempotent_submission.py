"""``apply_async(idempotency_key=...)`` on tasks, signatures and canvases, on each repository (memory, SQLite,
PostgreSQL): the same call again returns the handle of the job or workflow the first one stored, another call
under the key raises ``IdempotencyKeyReused`` (a ValueError), a malformed key ``InvalidIdempotencyKey`` (a
ValueError); concurrent calls store one job; purging the job frees its key. On PostgreSQL, two engines
submitting under the same keys at the same moment store one job per key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import entrypoints.builtin_tasks  # noqa: F401  (geekblog.add)
from application.engine import Engine
from application.idempotency import Idempotency
from domain.canvas import Signature
from domain.errors import IdempotencyKeyReused, IdInUse, InvalidIdempotencyKey
from entrypoints.celery_compat import AsyncResult, chain
from entrypoints.compat import signals
from entrypoints.container import Container
from entrypoints.settings import Settings
from tests.integration import compat_tasks
from tests.integration.compat_tasks import add
from tests.support.postgres import empty_tables


async def ran_once(engine: Engine, result: AsyncResult) -> None:
    assert await result.get(timeout=5) == 3
    assert compat_tasks.CALLS == [("add", (1, 2))]
    assert await engine.repo.count_by_state() == {"SUCCESS": 1}


class TestTasks:
    async def test_the_same_call_again_returns_the_first_job(self, engine: Engine) -> None:
        first = await add.apply_async((1, 2), idempotency_key="nightly-1")
        await first.get(timeout=5)
        again = await add.apply_async((1, 2), idempotency_key="nightly-1", expires=60)  # expires is not the call
        assert again.id == first.id
        stored = await engine.repo.get(first.id)
        assert stored is not None and stored.options.idempotency_key == "nightly-1"
        signature = add.s(1, 2).set(idempotency_key="nightly-1")
        assert (await signature.apply_async()).id == first.id
        await ran_once(engine, again)

    async def test_publish_signals_name_the_job_and_after_publish_comes_once(self, engine: Engine) -> None:
        sent: list[tuple[str, str]] = []

        def before(headers: dict[str, Any], **_: Any) -> None:
            sent.append(("before", headers["id"]))

        def after(headers: dict[str, Any], **_: Any) -> None:
            sent.append(("after", headers["id"]))

        signals.before_task_publish.connect(before, weak=False)
        signals.after_task_publish.connect(after, weak=False)
        try:
            first = await add.apply_async((1, 2), idempotency_key="signalled")
            again = await add.apply_async((1, 2), idempotency_key="signalled")
        finally:
            signals.before_task_publish.disconnect(before)
            signals.after_task_publish.disconnect(after)
        assert again.id == first.id
        assert sent[:2] == [("before", first.id), ("after", first.id)]
        assert [kind for kind, _ in sent] == ["before", "after", "before"]  # the repeat stored nothing
        await ran_once(engine, first)

    async def test_another_call_under_the_key_raises(self, engine: Engine) -> None:
        first = await add.apply_async((1, 2), idempotency_key="k")
        with pytest.raises(IdempotencyKeyReused, match=f"'k'.*job {first.id}") as raised:
            await add.apply_async((2, 2), idempotency_key="k")
        assert isinstance(raised.value, ValueError)
        with pytest.raises(IdempotencyKeyReused):
            await chain(add.s(1, 2), add.s(1)).apply_async(idempotency_key="k")
        await ran_once(engine, first)

    @pytest.mark.parametrize(
        ("key", "message"), [("", "empty"), (7, "a string"), ("caf\u00e9", "ASCII"), ("a,b", "comma")]
    )
    async def test_a_malformed_key_raises_before_anything_is_stored(
        self, engine: Engine, key: Any, message: str
    ) -> None:
        with pytest.raises(InvalidIdempotencyKey, match=message):
            await add.apply_async((1, 2), idempotency_key=key)
        with pytest.raises(ValueError, match=message):
            await chain(add.s(1, 2), add.s(1)).apply_async(idempotency_key=key)
        assert await engine.repo.count_by_state() == {}

    async def test_calls_from_threads_at_once_store_one_job(self, engine: Engine) -> None:
        results = await asyncio.gather(
            *(asyncio.to_thread(add.apply_async, (1, 2), idempotency_key="burst") for _ in range(6))
        )
        assert len({result.id for result in results}) == 1
        await ran_once(engine, results[0])

    async def test_a_purged_job_frees_its_key(self, engine: Engine) -> None:
        first = await add.apply_async((1, 2), idempotency_key="daily")
        assert await first.get(timeout=5) == 3
        assert await engine.repo.purge(2**40) == 1
        again = await add.apply_async((1, 2), idempotency_key="daily")
        assert again.id != first.id and await again.get(timeout=5) == 3


class TestCanvases:
    async def test_the_same_canvas_again_returns_the_first_workflow(self, engine: Engine) -> None:
        first = await chain(add.s(1, 2), add.s(10)).apply_async(idempotency_key="flow")
        assert await first.get(timeout=5) == 13
        again = await chain(add.s(1, 2), add.s(10)).apply_async(idempotency_key="flow")
        assert again.id == first.id and len(compat_tasks.CALLS) == 2

    async def test_a_key_on_one_call_inside_a_canvas_is_refused(self, engine: Engine) -> None:
        with pytest.raises(TypeError, match="whole submission"):
            await chain(add.s(1, 2).set(idempotency_key="inner"), add.s(1)).apply_async()
        assert await engine.repo.count_by_state() == {}


@pytest.fixture
async def two_engines(postgres_url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    """Two engines on one PostgreSQL database, as two replicas of the service."""
    await empty_tables(postgres_url)
    settings = Settings(persistence="postgres", database_url=postgres_url)
    engines = [Container(settings=settings).engine() for _ in range(2)]
    for engine in engines:
        await engine.start()
    try:
        yield engines[0], engines[1]
    finally:
        for engine in engines:
            await engine.stop()


async def test_two_replicas_submitting_under_one_key_at_once_store_one_job(
    two_engines: tuple[Engine, Engine],
) -> None:
    first, second = two_engines
    for round_ in range(10):
        key = Idempotency(key=f"replicas-{round_}", fingerprint="same request")
        signature = Signature(task="geekblog.add", args=[round_, 1], countdown=60)
        answers = await asyncio.gather(
            *(engine.jobs.submit_once(signature, key) for engine in (first, second, first, second))
        )
        assert len({job.id for job, _ in answers}) == 1, answers
        assert sorted(created for _, created in answers) == [False, False, False, True]
    assert await first.repo.count_by_state() == {"PENDING": 10}


class TestTaskIds:
    """``task_id=`` keeps Celery's meaning (the id of the job; a finished one given again runs again, replacing
    it); while the job under the id is unfinished, the same call again is stored once, another call refused."""

    async def test_the_same_call_under_an_unfinished_id_is_stored_once(self, engine: Engine) -> None:
        first = await add.apply_async((1, 2), task_id="report-7", countdown=60)
        again = await add.apply_async([1, 2], task_id="report-7", countdown=60)
        from_thread = await asyncio.to_thread(add.apply_async, (1, 2), task_id="report-7", countdown=60)
        assert first.id == again.id == from_thread.id == "report-7"
        assert await engine.repo.count_by_state() == {"PENDING": 1}

    async def test_another_call_under_an_unfinished_id_is_refused_naming_it(self, engine: Engine) -> None:
        await add.apply_async((1, 2), task_id="report-8", countdown=60)
        for call in (
            lambda: add.apply_async((2, 2), task_id="report-8"),
            lambda: asyncio.to_thread(add.apply_async, (2, 2), task_id="report-8"),
        ):
            with pytest.raises(IdInUse, match=r"'report-8'.*compat\.add") as raised:
                await call()
            assert isinstance(raised.value, ValueError)
        stored = await engine.repo.get("report-8")
        assert stored is not None and stored.args == [1, 2]

    async def test_a_finished_id_given_again_runs_again_as_in_celery(self, engine: Engine) -> None:
        first = await add.apply_async((1, 2), task_id="report-9")
        assert await first.get(timeout=5) == 3
        again = await add.apply_async((1, 2), task_id="report-9")
        assert again.id == "report-9" and await again.get(timeout=5) == 3
        assert compat_tasks.CALLS == [("add", (1, 2)), ("add", (1, 2))]
