"""Celery's built-in tasks behind ``xmap``, ``xstarmap`` and ``chunks``: call a registered task per item."""

from __future__ import annotations

from typing import Any

from entrypoints.compat.tasks import create_compatible_task, default_registry


@create_compatible_task(name="celery.map")
def celery_map(task: str, it: list[Any]) -> list[Any]:
    """``task(item)`` for each item, in this one job."""
    fn = default_registry.require(task).fn
    return [fn(item) for item in it]


@create_compatible_task(name="celery.starmap")
def celery_starmap(task: str, it: list[list[Any]]) -> list[Any]:
    """``task(*item)`` for each item, in this one job."""
    fn = default_registry.require(task).fn
    return [fn(*item) for item in it]
