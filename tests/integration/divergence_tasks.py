"""Tasks for tests/integration/test_celery_divergences.py: each exercises one Celery rule."""

from __future__ import annotations

import threading
import time
from typing import Any

from entrypoints.celery_compat import SoftTimeLimitExceeded, create_compatible_task

#: Values recorded by the tasks below, in call order.
SEEN: list[Any] = []
ATTEMPTS: dict[str, int] = {}
GATE = threading.Event()


@create_compatible_task(name="div.concat")
def concat(a: str, b: str, c: str = "") -> str:
    return a + b + c


@create_compatible_task(name="div.record")
def record(*args: Any, **kwargs: Any) -> list[Any]:
    SEEN.append((args, kwargs))
    return [list(args), kwargs]


@create_compatible_task(name="div.retry_with_new_args", bind=True, default_retry_delay=0)
def retry_with_new_args(self: Any, value: int) -> int:
    if value < 3:
        raise self.retry(args=(value + 1,), countdown=0)
    return value


@create_compatible_task(name="div.retry_with_eta", bind=True, default_retry_delay=600)
def retry_with_eta(self: Any, eta: float) -> float | None:
    if self.request.retries == 0:
        raise self.retry(eta=eta)
    return self.request.eta and eta


@create_compatible_task(name="div.forever_retries", bind=True, max_retries=None, default_retry_delay=0)
def forever_retries(self: Any, succeed_after: int) -> int:
    if self.request.retries < succeed_after:
        raise self.retry(countdown=0)
    return self.request.retries


@create_compatible_task(name="div.request_view", bind=True)
def request_view(self: Any) -> dict[str, Any]:
    request = self.request
    return {
        "eta": request.eta,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "queue": request.delivery_info["queue"],
        "headers": request.headers,
    }


@create_compatible_task(name="div.wait_gate")
def wait_gate(value: int) -> int:
    GATE.wait(5)
    return value


@create_compatible_task(name="div.report_other", bind=True)
def report_other(self: Any, other: str) -> str:
    self.update_state(task_id=other, state="NUDGED", meta={"by": self.request.id})
    return other


@create_compatible_task(name="div.bad_value")
def bad_value() -> None:
    raise ValueError("bad value", 42)


@create_compatible_task(name="div.soft_guarded", soft_time_limit=0.2)
def soft_guarded(seconds: float) -> str:
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "caught"
    return "finished"
