"""Queue controls through the Celery-compatible Python API, on memory, SQLite and PostgreSQL: ``queue=``,
``routing_key=``, ``concurrency_key=`` and ``concurrency_limit=`` on ``apply_async`` and on the decorator, and
the decorator's ``rate_limit=``, are stored with the job, and malformed ones raise a clear TypeError /
ValueError before anything is stored."""

from __future__ import annotations

import pytest

from application.engine import Engine
from entrypoints.compat.tasks import create_compatible_task
from tests.integration.compat_tasks import add


@create_compatible_task(name="queue_controls.limited", rate_limit="100/s")
def limited(x: int) -> int:
    return x


async def test_a_tasks_rate_limit_is_stored_with_its_jobs(engine: Engine) -> None:
    assert limited.rate_limit == "100/s"
    result = await limited.apply_async((5,))
    assert await result.get(timeout=5) == 5
    job = await engine.repo.get(result.id)
    assert job is not None and job.options.rate_limit == "100/s" and job.rate_interval == 0.01


async def test_call_options_are_stored_with_the_job(engine: Engine) -> None:
    result = await add.apply_async((1, 2), routing_key="reports", concurrency_key="project:9", concurrency_limit=2)
    assert await result.get(timeout=5) == 3
    job = await engine.repo.get(result.id)
    assert job is not None and job.queue == "reports" and job.concurrency == ("project:9", 2)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"queue": "a b"}, ValueError),
        ({"routing_key": ""}, ValueError),
        ({"queue": 5}, ValueError),
        ({"concurrency_key": ""}, ValueError),
        ({"concurrency_key": "k", "concurrency_limit": 0}, ValueError),
        ({"concurrency_key": "k", "concurrency_limit": "2"}, ValueError),
        ({"concurrency_limit": 3}, ValueError),
    ],
)
async def test_malformed_call_options_raise(engine: Engine, options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match=r"queue|routing_key|concurrency"):
        await add.apply_async((1, 2), **options)
    assert await engine.repo.count_by_state() == {}, "nothing was stored"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"concurrency_key": 5}, TypeError),
        ({"concurrency_key": "k", "concurrency_limit": -1}, ValueError),
        ({"rate_limit": "10/week"}, ValueError),
        ({"rate_limit": [1]}, TypeError),
    ],
)
def test_malformed_task_options_raise_at_registration(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error, match=r"concurrency|rate_limit"):
        create_compatible_task(name="queue_controls.bad", **options)(lambda: None)
