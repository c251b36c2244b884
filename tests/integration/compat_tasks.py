"""Tasks the Celery-compatibility tests run; ``CALLS`` records what actually executed."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from entrypoints.celery_compat import chord, create_compatible_task, group

CALLS: list[tuple[str, Any]] = []
RELEASE = threading.Event()


@create_compatible_task(name="compat.add")
def add(x: int, y: int) -> int:
    CALLS.append(("add", (x, y)))
    return x + y


@create_compatible_task(name="compat.mul")
async def mul(x: int, y: int) -> int:
    CALLS.append(("mul", (x, y)))
    return x * y


@create_compatible_task(name="compat.total")
def total(values: list[int]) -> int:
    CALLS.append(("total", values))
    return sum(values)


@create_compatible_task(name="compat.echo")
async def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    CALLS.append(("echo", args))
    return {"args": list(args), "kwargs": kwargs}


@create_compatible_task(name="compat.sleepy", track_started=True)
async def sleepy(value: int, seconds: float) -> int:
    await asyncio.sleep(seconds)
    CALLS.append(("sleepy", value))
    return value


@create_compatible_task(name="compat.boom")
def boom(*args: Any) -> None:
    CALLS.append(("boom", args))
    raise ValueError(f"boom {args}")


@create_compatible_task(name="compat.not_json")
def not_json() -> Any:
    return {1, 2, 3}


@create_compatible_task(name="compat.progress", bind=True)
async def progress(self: Any, steps: int, gate: float = 0.0) -> int:
    for step in range(steps):
        await self.update_state(state="PROGRESS", meta={"done": step, "total": steps})
        if gate:
            await asyncio.sleep(gate)
    return steps


@create_compatible_task(name="compat.sync_progress", bind=True)
def sync_progress(self: Any, steps: int) -> str:
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"done": step})
        time.sleep(0.01)
    return self.request.id


@create_compatible_task(
    name="compat.flaky",
    bind=True,
    autoretry_for=(ConnectionError,),
    max_retries=3,
    retry_backoff=False,
    default_retry_delay=0,
)
def flaky(self: Any, fail_times: int) -> int:
    CALLS.append(("flaky", self.request.retries))
    if self.request.retries < fail_times:
        raise ConnectionError(f"attempt {self.request.retries} failed")
    return self.request.retries


@create_compatible_task(name="compat.explicit_retry", bind=True, max_retries=2)
def explicit_retry(self: Any) -> int:
    CALLS.append(("explicit_retry", self.request.retries))
    try:
        raise KeyError("missing")
    except KeyError as exc:
        if self.request.retries < 5:
            raise self.retry(exc=exc, countdown=0.01) from exc
    return -1


@create_compatible_task(name="compat.fan_out", bind=True)
async def fan_out(self: Any, count: int) -> None:
    self.replace(chord([add.s(i, i) for i in range(count)], total.s()))


@create_compatible_task(name="compat.fan_group", bind=True)
def fan_group(self: Any, values: list[int]) -> None:
    self.replace(group(mul.s(value, 10) for value in values))


@create_compatible_task(name="compat.forever", track_started=True)
async def forever() -> None:
    CALLS.append(("forever", None))
    await asyncio.sleep(3600)


@create_compatible_task(name="compat.sync_forever", bind=True, track_started=True)
def sync_forever(self: Any) -> None:
    CALLS.append(("sync_forever", None))
    while True:
        self.update_state(state="PROGRESS", meta={"alive": True})
        time.sleep(0.01)


@create_compatible_task(name="compat.limited", time_limit=0.2)
async def limited() -> None:
    await asyncio.sleep(3600)


@create_compatible_task(name="compat.submits_from_thread")
def submits_from_thread(x: int) -> int:
    handle = add.delay(x, 1)
    return int(handle.get(timeout=10))


@create_compatible_task(name="compat.record_order")
def record_order(label: str) -> str:
    CALLS.append(("order", label))
    return label


@create_compatible_task(name="compat.blocker", track_started=True)
def blocker() -> None:
    RELEASE.wait(10)


@create_compatible_task(name="compat.exit")
def exits() -> None:
    raise SystemExit(3)


@create_compatible_task(name="compat.own_timeout", time_limit=5)
async def own_timeout() -> None:
    raise TimeoutError("the upstream server did not answer")
