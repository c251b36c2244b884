"""Tasks the eager-mode, signal and class-based-task tests run (``tests/integration/test_eager_and_signals.py``)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from entrypoints.celery_compat import Task, chain, chord, current_app, shared_task

#: What the handlers of :class:`Recording` saw: ``(hook, task_id, detail)``.
HOOKS: list[tuple[str, Any, Any]] = []
ATTEMPTS: dict[str, int] = {}
STARTED = threading.Event()
RELEASE = threading.Event()


class ExpectedError(Exception):
    """Raised on purpose by the failing tasks."""


@shared_task(name="eager.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="eager.mul")
async def mul(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x * y


@shared_task(name="eager.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@shared_task(name="eager.fail")
def fail(*args: Any) -> None:
    raise ExpectedError("expected to fail", *args)


@shared_task(name="eager.return_exception")
def return_exception(e: Any) -> Any:
    return e


@shared_task(name="eager.new_style_errback")
def new_style_errback(request: Any, exc: BaseException, traceback: str) -> None:
    HOOKS.append(("errback", request.id, (type(exc).__name__, "ExpectedError" in (traceback or ""))))


@shared_task(name="eager.retrying", bind=True, max_retries=3, default_retry_delay=60)
def retrying(self: Any, succeed_at: int) -> int:
    """Retries (with a long countdown, which an eager run does not wait for) until ``succeed_at``."""
    if self.request.retries < succeed_at:
        raise self.retry(exc=ExpectedError(f"attempt {self.request.retries}"), countdown=30)
    return int(self.request.retries)


@shared_task(name="eager.retry_fast", bind=True, max_retries=1)
def retry_fast(self: Any) -> int:
    """Retried once, at once, by the engine."""
    if self.request.retries:
        return int(self.request.retries)
    raise self.retry(exc=ExpectedError("first attempt"), countdown=0)


@shared_task(name="eager.request_ids", bind=True)
def request_ids(self: Any) -> dict[str, Any]:
    return {
        "id": self.request.id,
        "parent_id": self.request.parent_id,
        "root_id": self.request.root_id,
        "is_eager": self.request.is_eager,
        "called_directly": self.request.called_directly,
        "retries": self.request.retries,
    }


@shared_task(name="eager.nested_apply", bind=True)
def nested_apply(self: Any) -> dict[str, Any]:
    child = request_ids.apply().get()
    return {"id": self.request.id, "child": child}


@shared_task(name="eager.progress", bind=True)
def progress(self: Any, steps: int) -> int:
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"done": step + 1})
    return steps


@shared_task(name="eager.async_progress", bind=True)
async def async_progress(self: Any) -> str:
    await self.update_state(state="PROGRESS", meta={"done": 1})
    return "ok"


@shared_task(name="eager.replaced", bind=True)
def replaced(self: Any, x: int) -> Any:
    return self.replace(chain(add.s(x, 1), add.s(10)))


@shared_task(name="eager.chain_inside")
def chain_inside(x: int, y: int) -> Any:
    """Celery's ``chain_add``: applies a chain from inside a task (eager under ``task_always_eager``)."""
    return (add.s(x, x) | add.s(y)).apply_async().get()


@shared_task(name="eager.chord_inside")
def chord_inside(x: int, y: int) -> Any:
    return chord([add.s(x, x), add.s(y, y)], tsum.s()).apply_async().get()


@shared_task(name="eager.delay_inside")
def delay_inside(x: int) -> Any:
    """``.delay()`` inside a task: under ``task_always_eager`` it runs here and gives an EagerResult."""
    inner = add.delay(x, x)
    return {"type": type(inner).__name__, "value": inner.get()}


@shared_task(name="eager.blocking")
def blocking() -> str:
    """Waits (in the engine's thread pool) until the test releases it, or its job is revoked."""
    STARTED.set()
    RELEASE.wait(5)
    return "released"


@shared_task(name="eager.async_forever")
async def async_forever() -> None:
    STARTED.set()
    await asyncio.sleep(30)


@shared_task(name="eager.always_eager_flag")
def always_eager_flag() -> bool:
    return bool(current_app.conf.task_always_eager)


class ClassBasedAutoRetryTask(Task):
    """Celery's own ``ClassBasedAutoRetryTask`` (``t/integration/tasks.py``)."""

    name = "auto_retry_class_task"
    autoretry_for = (ValueError,)
    retry_kwargs = {"max_retries": 1, "countdown": 0}
    retry_backoff = True

    def run(self) -> int:
        if self.request.retries:
            return int(self.request.retries)
        raise ValueError()


class AlwaysFailing(Task):
    name = "eager.class_always_failing"
    autoretry_for = (ValueError,)
    retry_kwargs = {"max_retries": 2, "countdown": 0}

    def run(self, label: str) -> None:
        ATTEMPTS[label] = ATTEMPTS.get(label, 0) + 1
        raise ValueError(label)


class Recording(Task):
    """A base class whose handlers record what they were called with (``@shared_task(base=Recording)``)."""

    def on_success(self, retval: Any, task_id: str | None, args: Any, kwargs: Any) -> None:
        HOOKS.append(("on_success", task_id, retval))

    def on_failure(self, exc: BaseException, task_id: str | None, args: Any, kwargs: Any, einfo: Any) -> None:
        HOOKS.append(("on_failure", task_id, repr(exc)))

    def on_retry(self, exc: BaseException | None, task_id: str | None, args: Any, kwargs: Any, einfo: Any) -> None:
        HOOKS.append(("on_retry", task_id, repr(exc)))

    def after_return(self, status: str, retval: Any, task_id: str | None, args: Any, kwargs: Any, einfo: Any) -> None:
        HOOKS.append(("after_return", task_id, status))


@shared_task(name="eager.with_base", base=Recording, bind=True, max_retries=1)
def with_base(self: Any, mode: str) -> str:
    if mode == "fail":
        raise ExpectedError("with_base failed")
    if mode == "retry" and not self.request.retries:
        raise self.retry(exc=ExpectedError("again"), countdown=0)
    return f"{mode}:{self.request.retries}"
