"""Tasks for ``tests/integration/test_celery_task_features.py``: Reject, pydantic models, retry options,
time-limit checks, the worker's log lines and request fields."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from entrypoints.celery_compat import Reject, shared_task


class Point(BaseModel):
    x: int
    y: int


class Total(BaseModel):
    total: int


@shared_task(name="features.reject_then_succeed", bind=True)
def reject_then_succeed(self: Any) -> Any:
    if not self.request.delivery_info.get("redelivered"):
        raise Reject(requeue=True)
    return {"retries": self.request.retries, "redelivered": self.request.delivery_info["redelivered"]}


@shared_task(name="features.reject_for_good")
def reject_for_good() -> None:
    raise Reject("rejected", requeue=False)


@shared_task(name="features.add_points", pydantic=True)
def add_points(a: Point, b: Point | None = None) -> Total:
    return Total(total=a.x + a.y + (b.x + b.y if b is not None else 0))


@shared_task(name="features.add_points_async", pydantic=True)
async def add_points_async(a: Point) -> Total:
    return Total(total=a.x + a.y)


@shared_task(name="features.point_of", bind=True, pydantic=True)
def point_of(self: Any, a: Point) -> dict[str, Any]:
    """A bound pydantic task; a return annotation that is not a model is returned as it is."""
    return {"type": type(a).__name__, "x": a.x, "task": self.name}


@shared_task(name="features.retry_with_options", bind=True, max_retries=1)
def retry_with_options(self: Any, **options: Any) -> Any:
    if self.request.retries:
        return {
            "delivery_info": self.request.delivery_info,
            "headers": self.request.headers,
            "expires": self.request.expires,
        }
    raise self.retry(countdown=0, **options)


@shared_task(name="features.limits_inverted", soft_time_limit=2, time_limit=1)
def limits_inverted() -> None:
    """Never runs: Celery refuses to send a task whose soft limit exceeds its hard limit."""


@shared_task(name="features.add")
def add(x: int, y: int) -> int:
    return x + y


class Broken(Exception):
    """Raised on purpose."""


@shared_task(name="features.broken")
def broken(*args: Any) -> None:
    raise Broken("broken", *args)


@shared_task(name="features.request_fields", bind=True)
def request_fields(self: Any) -> dict[str, Any]:
    return {
        "properties": self.request.properties,
        "replaced_task_nesting": self.request.replaced_task_nesting,
        "argsrepr": self.request.argsrepr,
        "kwargsrepr": self.request.kwargsrepr,
    }


@shared_task(name="features.replaced", bind=True)
def replaced(self: Any) -> None:
    self.replace(request_fields.si())
