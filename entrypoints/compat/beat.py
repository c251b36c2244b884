"""Celery beat's schedules in code: ``crontab(...)`` and a ``beat_schedule`` dict, read as stored schedules.

    app.conf.beat_schedule = {
        "cleanup": {"task": "tasks.cleanup", "schedule": crontab(minute=0, hour=3)},
        "ping": {"task": "tasks.ping", "schedule": 30.0, "args": ("hello",)},
    }

Each entry becomes a :class:`~domain.schedule.Schedule` declared in code, reconciled with the stored ones
when the engine starts (see :meth:`application.schedules.ScheduleService.reconcile`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Final

from domain.schedule import MISSED_POLICIES, Schedule, crontab_expression

_ENTRY_KEYS: Final = frozenset(
    {"task", "schedule", "args", "kwargs", "options", "relative", "missed", "enabled", "timezone", "start", "end"}
)


class crontab:
    """Celery's ``crontab(minute, hour, day_of_week, day_of_month, month_of_year)``: a cron expression read
    in the schedule's time zone (``app.conf.timezone``, UTC by default, or the entry's ``timezone``)."""

    def __init__(
        self,
        minute: object = "*",
        hour: object = "*",
        day_of_week: object = "*",
        day_of_month: object = "*",
        month_of_year: object = "*",
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise TypeError(f"crontab() got unsupported argument(s): {', '.join(sorted(unsupported))}")
        self.expression = crontab_expression(minute, hour, day_of_week, day_of_month, month_of_year)

    def __repr__(self) -> str:
        return f"<crontab: {self.expression}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, crontab) and other.expression == self.expression

    def __hash__(self) -> int:
        return hash(self.expression)


def schedules_from_beat(beat_schedule: Mapping[str, Any], *, timezone: str | None = None) -> list[Schedule]:
    """The schedules a Celery-shaped ``beat_schedule`` declares (TypeError/ValueError on a malformed entry).

    An entry's ``schedule`` is a :class:`crontab`, a number of seconds, a ``timedelta`` or a five-field cron
    string; ``args``, ``kwargs`` and ``options`` are Celery's. Beyond Celery: ``missed`` (``"skip"`` or
    ``"run_once"``), ``enabled``, ``timezone``, ``start``/``end`` (aware datetimes or epoch seconds).
    Celery's ``relative`` is accepted and ignored (interval ticks are on a fixed grid here).
    """
    if not isinstance(beat_schedule, Mapping):
        raise TypeError(f"beat_schedule must be a dict of entries by name, not {type(beat_schedule).__name__}")
    declared: list[Schedule] = []
    for name, entry in beat_schedule.items():
        if not isinstance(name, str):
            raise TypeError(f"beat_schedule names are strings, not {name!r}")
        if not isinstance(entry, Mapping):
            raise TypeError(f"beat_schedule[{name!r}] must be a dict with 'task' and 'schedule'")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ValueError(f"beat_schedule[{name!r}]: unknown key(s) {', '.join(sorted(unknown))}")
        if "task" not in entry or "schedule" not in entry:
            raise ValueError(f"beat_schedule[{name!r}] needs 'task' and 'schedule'")
        task = entry["task"]
        task_name = task if isinstance(task, str) else getattr(task, "name", None)
        if not isinstance(task_name, str):
            raise TypeError(f"beat_schedule[{name!r}]['task'] must be a task name")
        cron, every = _timing(name, entry["schedule"])
        missed = entry.get("missed", "skip")
        if missed not in MISSED_POLICIES:
            raise ValueError(f"beat_schedule[{name!r}]: missed must be one of {', '.join(MISSED_POLICIES)}")
        schedule = Schedule(
            name=name,
            task=task_name,
            args=list(entry.get("args") or ()),
            kwargs=dict(entry.get("kwargs") or {}),
            options=dict(entry.get("options") or {}),
            cron=cron,
            every=every,
            timezone=entry.get("timezone") or timezone or "UTC",
            missed=missed,
            enabled=bool(entry.get("enabled", True)),
            start_at=_moment(name, "start", entry.get("start")),
            end_at=_moment(name, "end", entry.get("end")),
            declared=True,
        )
        try:
            declared.append(schedule.check())
        except ValueError as exc:
            raise ValueError(f"beat_schedule[{name!r}]: {exc}") from None
    return declared


def _timing(name: str, value: object) -> tuple[str | None, float | None]:
    if isinstance(value, crontab):
        return value.expression, None
    if isinstance(value, str):
        return value, None
    if isinstance(value, dt.timedelta):
        return None, value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None, float(value)
    run_every = getattr(value, "run_every", None)  # celery.schedules.schedule(run_every=...)
    if isinstance(run_every, dt.timedelta):
        return None, run_every.total_seconds()
    raise TypeError(
        f"beat_schedule[{name!r}]['schedule'] must be crontab(...), seconds, a timedelta or a cron string,"
        f" not {type(value).__name__}"
    )


def _moment(name: str, key: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError(f"beat_schedule[{name!r}]['{key}'] must be an aware datetime (with a time zone)")
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"beat_schedule[{name!r}]['{key}'] must be a datetime or epoch seconds")
