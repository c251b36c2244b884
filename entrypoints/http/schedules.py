"""``/schedules``: periodic schedules (what Celery beat did), their next runs and their jobs.

Times are ISO 8601 (``start``/``end`` given with a time zone); ``every`` is in seconds. A malformed
schedule (its cron expression, time zone, interval, missed-tick policy, options or arguments) is a 422,
an unknown name a 404, a name in use a 409.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from application.schedules import ScheduleExists, ScheduleService
from domain.schedule import MISSED_POLICIES, Schedule
from entrypoints.http.injection import Injected
from entrypoints.http.openapi import problems
from entrypoints.http.problems import Problem, problem
from entrypoints.http.schemas import DateTime, JobOut, TaskName, iso, iso_or_none

ScheduleName = Annotated[
    str, Meta(min_length=1, max_length=200, description="Unique; letters, digits, '_', '.', ':', '@', '-' or space")
]
Missed = Annotated[
    str,
    Meta(description="After downtime: 'skip' (default: a tick over 60 s late is not run) or 'run_once' (one catch-up)"),
]
NO_SCHEDULE = {404: "No schedule has this name"}
INVALID = {422: "The schedule cannot be used: its cron, timezone, every, missed, options, task or arguments"}
_NEXT_RUNS = 5
_LAST_JOBS = 10


class ScheduleIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new periodic schedule: exactly one of ``cron`` (five fields, read in ``timezone``) and ``every``."""

    name: ScheduleName
    task: TaskName
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    options: Annotated[
        dict[str, Any],
        Meta(
            description="apply_async options: queue, routing_key, priority, expires (seconds after the tick),"
            " time_limit, soft_time_limit, max_retries, headers, ignore_result, concurrency_key, concurrency_limit"
        ),
    ] = msgspec.field(default_factory=dict)
    cron: Annotated[str | None, Meta(description="A five-field cron expression, e.g. '*/5 * * * *'")] = None
    every: Annotated[float | None, Meta(description="Seconds between ticks (at least 1)")] = None
    timezone: Annotated[str, Meta(description="The IANA time zone cron is read in")] = "UTC"
    missed: Missed = "skip"
    enabled: bool = True
    start: Annotated[datetime | None, Meta(description="No tick before this time (with its time zone)")] = None
    end: Annotated[datetime | None, Meta(description="No tick after this time (with its time zone)")] = None


class SchedulePatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What to change (absent or null: unchanged). ``enabled: false`` pauses, ``enabled: true`` resumes;
    giving ``cron`` replaces ``every`` and the other way round."""

    task: TaskName | None = None
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    cron: str | None = None
    every: float | None = None
    timezone: str | None = None
    missed: Missed | None = None
    enabled: bool | None = None
    start: datetime | None = None
    end: datetime | None = None


class ScheduleOut(msgspec.Struct, kw_only=True):
    """A periodic schedule and where it stands; ``next_runs`` are its next ticks (none while paused)."""

    name: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    cron: str | None
    every: float | None
    timezone: str
    missed: str
    enabled: bool
    start: DateTime | None
    end: DateTime | None
    declared: Annotated[bool, Meta(description="Declared in code (beat_schedule): reconciled at each start")]
    next_run: DateTime | None
    last_tick: DateTime | None
    next_runs: list[DateTime]
    created_at: DateTime
    updated_at: DateTime

    @classmethod
    def of(cls, schedule: Schedule, next_runs: list[float]) -> ScheduleOut:
        return cls(
            name=schedule.name,
            task=schedule.task,
            args=schedule.args,
            kwargs=schedule.kwargs,
            options=schedule.options,
            cron=schedule.cron,
            every=schedule.every,
            timezone=schedule.timezone,
            missed=schedule.missed,
            enabled=schedule.enabled,
            start=iso_or_none(schedule.start_at),
            end=iso_or_none(schedule.end_at),
            declared=schedule.declared,
            next_run=iso_or_none(schedule.next_due_at),
            last_tick=iso_or_none(schedule.last_tick),
            next_runs=[iso(tick) for tick in next_runs],
            created_at=iso(schedule.created_at),
            updated_at=iso(schedule.updated_at),
        )


class ScheduleDetailOut(ScheduleOut, kw_only=True):
    """A schedule with its latest jobs, newest first."""

    last_jobs: list[JobOut]


class ScheduleListOut(msgspec.Struct, kw_only=True):
    """Every schedule, by name."""

    items: list[ScheduleOut]


def _moment(value: datetime | None, label: str) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"{label} needs a time zone (e.g. 2026-01-01T00:00:00Z)")
    return value.timestamp()


def _invalid(exc: Exception) -> Response[Problem]:
    return problem(422, "Invalid periodic schedule", str(exc), slug="invalid-periodic-schedule")


def _check_missed(missed: str | None) -> None:
    if missed is not None and missed not in MISSED_POLICIES:
        raise ValueError(f"missed must be one of {', '.join(MISSED_POLICIES)}, not {missed!r}")


class ScheduleController(Controller):
    """Create, list, read, change (pause, resume), delete and run periodic schedules now."""

    path = "/schedules"
    tags = ["schedules"]

    @post(
        "/",
        status_code=201,
        summary="Create a periodic schedule",
        responses=problems(400, 409, 413, 415, 422, 503, described={**INVALID, 409: "A schedule has this name"}),
    )
    async def create(
        self, data: JSONBody[ScheduleIn], schedules: Injected[ScheduleService]
    ) -> Response[ScheduleOut] | Response[Problem]:
        try:
            _check_missed(data.missed)
            created = await schedules.create(
                Schedule(
                    name=data.name,
                    task=data.task,
                    args=data.args,
                    kwargs=data.kwargs,
                    options=data.options,
                    cron=data.cron,
                    every=data.every,
                    timezone=data.timezone,
                    missed=data.missed,  # type: ignore[arg-type]
                    enabled=data.enabled,
                    start_at=_moment(data.start, "start"),
                    end_at=_moment(data.end, "end"),
                )
            )
        except ScheduleExists as exc:
            return problem(409, "Conflict", str(exc), slug="schedule-exists")
        except (ValueError, TypeError) as exc:
            return _invalid(exc)
        body = ScheduleOut.of(created, schedules.next_runs(created, _NEXT_RUNS))
        return Response(body, status_code=201, headers={"Location": f"/schedules/{created.name}"})

    @get("/", summary="List periodic schedules", responses=problems(503))
    async def list_schedules(self, schedules: Injected[ScheduleService]) -> ScheduleListOut:
        stored = await schedules.list_schedules()
        return ScheduleListOut(items=[ScheduleOut.of(s, schedules.next_runs(s, _NEXT_RUNS)) for s in stored])

    @get(
        "/{name:str}",
        summary="Get a schedule, its next runs and its last jobs",
        responses=problems(400, 404, 503, described=NO_SCHEDULE),
    )
    async def get_schedule(self, name: FromPath[str], schedules: Injected[ScheduleService]) -> ScheduleDetailOut:
        schedule = await schedules.get(name)
        out = ScheduleOut.of(schedule, schedules.next_runs(schedule, _NEXT_RUNS))
        jobs = await schedules.recent_jobs(name, _LAST_JOBS)
        return ScheduleDetailOut(**msgspec.structs.asdict(out), last_jobs=[JobOut.of(job) for job in jobs])

    @patch(
        "/{name:str}",
        summary="Change, pause ({enabled: false}) or resume ({enabled: true}) a schedule",
        responses=problems(400, 404, 409, 413, 415, 422, 503, described={**NO_SCHEDULE, **INVALID}),
    )
    async def change(
        self, name: FromPath[str], data: JSONBody[SchedulePatch], schedules: Injected[ScheduleService]
    ) -> Response[ScheduleOut] | Response[Problem]:
        changes = {key: value for key, value in msgspec.structs.asdict(data).items() if value is not None}
        try:
            _check_missed(data.missed)
            for key, field in (("start", "start_at"), ("end", "end_at")):
                if key in changes:
                    changes[field] = _moment(changes.pop(key), key)
            changed = await schedules.update(name, **changes)
        except (ValueError, TypeError) as exc:
            return _invalid(exc)
        return Response(ScheduleOut.of(changed, schedules.next_runs(changed, _NEXT_RUNS)))

    @delete(
        "/{name:str}",
        status_code=204,
        summary="Delete a schedule",
        responses=problems(400, 404, 503, described=NO_SCHEDULE),
    )
    async def remove(self, name: FromPath[str], schedules: Injected[ScheduleService]) -> None:
        await schedules.delete(name)

    @post(
        "/{name:str}/run",
        status_code=202,
        summary="Run a schedule's task now (its ticks are unchanged)",
        responses=problems(400, 404, 422, 503, described={**NO_SCHEDULE, **INVALID}),
    )
    async def run_now(
        self, name: FromPath[str], schedules: Injected[ScheduleService]
    ) -> Response[JobOut] | Response[Problem]:
        try:
            job = await schedules.run_now(name)
        except (ValueError, TypeError) as exc:
            return _invalid(exc)
        return Response(JobOut.of(job), status_code=202, headers={"Location": f"/jobs/{job.id}"})
