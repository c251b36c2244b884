"""Port: periodic schedules stored beside the jobs, and the tick a commit fires.

A schedule's tick is fired by the commit that stores its job (``Commit.tick``): the job, a unique
(schedule, tick) row and the schedule's advance (a compare-and-set on its stored revision) land in one
transaction or not at all, so restarts, a SIGKILL at any moment and several engines on one database never
double or lose a tick. Every job repository adapter implements both halves (its own tables).
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from domain.schedule import Schedule


class ScheduleTick(msgspec.Struct, frozen=True, kw_only=True):
    """The tick a commit fires: its job ``job_id`` is in the same commit.

    ``revision``: the schedule's stored revision the fire was planned on; the commit is refused
    (``domain.errors.Conflict``) unless it still is, and then stores ``next_due_at``, ``new_revision``
    and ``last_tick = tick``. None for a run on request (nothing advances). Either way the commit is
    refused when (``schedule``, ``tick``) was fired already.
    """

    schedule: str
    tick: float
    job_id: str
    revision: str | None = None
    next_due_at: float | None = None
    new_revision: str = ""


class ScheduleStore(Protocol):
    """The stored schedules: read, written whole with a compare-and-set on their revision, and the next due.

    Writes are durable before they return. ``replace`` and ``delete`` say False when there was nothing to
    change (gone, or another writer's revision)."""

    async def add(self, schedule: Schedule) -> bool:
        """Store a new schedule; False (nothing stored) when one has its name already."""
        ...

    async def replace(self, schedule: Schedule, *, revision: str) -> bool:
        """Overwrite the stored schedule of that name if its revision still is ``revision``."""
        ...

    async def get(self, name: str) -> Schedule | None: ...

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    async def delete(self, name: str) -> bool:
        """Delete the schedule and its fired-tick records (its jobs stay)."""
        ...

    async def next_schedule_due(self) -> float | None:
        """The earliest ``next_due_at`` of any schedule (None: nothing to fire, ever, until a change)."""
        ...

    async def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        """Up to ``limit`` schedules whose ``next_due_at`` is at or before ``now``, earliest first."""
        ...
