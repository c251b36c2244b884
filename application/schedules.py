"""Periodic schedules (what Celery beat did): their use cases, and the scheduler that fires their ticks.

The scheduler is no polling loop: it sleeps until the earliest ``next_due_at`` of any schedule and is woken
when one changes here. Each due schedule's tick is fired by ONE commit that stores the tick's job, a unique
(schedule, tick) row and the schedule's advance (a compare-and-set on its revision; see
:class:`~application.ports.schedule_store.ScheduleTick`), through the dispatcher like any submission, so
the job starts at once when a slot is free. A restart, a SIGKILL at any moment or another engine firing
the same tick can therefore neither double nor lose it: whoever commits first wins, the others' commits
are refused whole. On storage several engines share, a change here tells the others (``tell_others``:
the engines' "work queued" packet, which wakes their schedulers too), and ``reread_seconds`` is the slow
safety re-read for a lost packet.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Final

import msgspec

from application.job_service import JobService
from application.ports import Clock, IdSource, JobFilter
from application.ports.schedule_store import ScheduleStore, ScheduleTick
from application.registry import TaskRegistry
from domain.canvas import Signature
from domain.errors import Conflict, DomainError, NotFound
from domain.job import Job
from domain.schedule import (
    DEFINITION_FIELDS,
    TIMING_FIELDS,
    Schedule,
    firing,
    first_due,
    iso_tick,
    next_ticks,
)

log = logging.getLogger(__name__)

_DUE_BATCH: Final = 100
_WRITE_ATTEMPTS: Final = 5
_RETRY_SECONDS: Final = 1.0
"""After a failure to read or fire (storage unavailable), how long the scheduler waits to try again."""


class ScheduleExists(DomainError, ValueError):
    """A schedule with this name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a schedule named {name!r} exists already")
        self.name = name


class Reconciled(msgspec.Struct, frozen=True, kw_only=True):
    """What reconciling the schedules declared in code with the stored ones did, by name."""

    added: list[str] = msgspec.field(default_factory=list)
    changed: list[str] = msgspec.field(default_factory=list)
    removed: list[str] = msgspec.field(default_factory=list)
    unchanged: list[str] = msgspec.field(default_factory=list)


class ScheduleService:
    """Create, change, pause, resume, delete and run schedules now; reconcile those declared in code; and
    run the scheduler loop while the engine runs."""

    def __init__(
        self,
        *,
        store: ScheduleStore,
        jobs: JobService,
        registry: TaskRegistry,
        clock: Clock,
        ids: IdSource,
        reread_seconds: float | None = None,
        tell_others: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._registry = registry
        self._clock = clock
        self._ids = ids
        self._reread = reread_seconds
        self._tell_others = tell_others
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._passes: list[asyncio.Future[None]] = []
        self.declared: list[Schedule] | None = None
        """Schedules declared in code, reconciled with the stored ones at :meth:`start` (None: none were
        declared, nothing is reconciled)."""
        self.fired = 0
        """Ticks this engine fired (their jobs stored)."""

    # --- use cases ------------------------------------------------------------------------------------

    async def create(self, schedule: Schedule) -> Schedule:
        """Store a new schedule (ValueError if malformed or its task unknown; :class:`ScheduleExists`)."""
        now = self._clock.now()
        fresh = self._checked(
            msgspec.structs.replace(
                schedule,
                anchor=schedule.start_at if schedule.start_at is not None else now,
                created_at=now,
                updated_at=now,
                revision=self._ids.new_id(),
                last_tick=None,
            )
        )
        fresh = msgspec.structs.replace(fresh, next_due_at=first_due(fresh, now))
        if not await self._store.add(fresh):
            raise ScheduleExists(schedule.name)
        self._changed()
        return fresh

    async def get(self, name: str) -> Schedule:
        schedule = await self._store.get(name)
        if schedule is None:
            raise NotFound("schedule", name, by="name")
        return schedule

    async def list_schedules(self) -> list[Schedule]:
        return await self._store.list_schedules()

    async def update(self, name: str, **changes: Any) -> Schedule:
        """Change a schedule's definition (the fields of :data:`DEFINITION_FIELDS`, ``declared``): a change of
        timing or a resume plans its next tick from now, a pause clears it."""
        unknown = set(changes) - {*DEFINITION_FIELDS, "declared"}
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))} of a schedule")
        for _ in range(_WRITE_ATTEMPTS):
            stored = await self.get(name)
            now = self._clock.now()
            changed = msgspec.structs.replace(stored, **changes)
            if changed.cron is not None and "cron" in changes and "every" not in changes:
                changed = msgspec.structs.replace(changed, every=None)
            if changed.every is not None and "every" in changes and "cron" not in changes:
                changed = msgspec.structs.replace(changed, cron=None)
            changed = self._checked(changed)
            retimed = any(getattr(changed, field) != getattr(stored, field) for field in TIMING_FIELDS)
            if changed.every is not None and (retimed or stored.every is None):
                changed = msgspec.structs.replace(
                    changed, anchor=changed.start_at if changed.start_at is not None else now
                )
            next_due = changed.next_due_at
            if not changed.enabled:
                next_due = None
            elif retimed or not stored.enabled or stored.next_due_at is None:
                next_due = first_due(changed, now)
            changed = msgspec.structs.replace(
                changed, next_due_at=next_due, updated_at=now, revision=self._ids.new_id()
            )
            if await self._store.replace(changed, revision=stored.revision):
                self._changed()
                return changed
        raise Conflict(f"schedule {name!r} kept changing while being updated")

    async def pause(self, name: str) -> Schedule:
        return await self.update(name, enabled=False)

    async def resume(self, name: str) -> Schedule:
        """Enabled again: its next tick is the first one from now (the ticks while paused are not run)."""
        return await self.update(name, enabled=True)

    async def delete(self, name: str) -> None:
        if not await self._store.delete(name):
            raise NotFound("schedule", name, by="name")
        self._changed()

    async def run_now(self, name: str) -> Job:
        """A job of the schedule now, besides its ticks (which are unchanged); its ``tick`` is now."""
        schedule = await self.get(name)
        now = self._clock.now()
        job = self._job_for(schedule, now)
        await self._jobs.queue_tick(job, ScheduleTick(schedule=name, tick=now, job_id=job.id))
        return job

    async def recent_jobs(self, name: str, limit: int = 10) -> list[Job]:
        """The schedule's latest jobs, newest first."""
        return (await self._jobs.list(JobFilter(schedule=name), limit=limit)).items

    def next_runs(self, schedule: Schedule, count: int = 5) -> list[float]:
        """The schedule's next ``count`` ticks (none while paused)."""
        if schedule.next_due_at is None:
            return []
        return [schedule.next_due_at, *next_ticks(schedule, schedule.next_due_at, count - 1)]

    async def reconcile(self, declared: Sequence[Schedule]) -> Reconciled:
        """Make the stored schedules declared in code match ``declared``: new ones added, changed ones
        updated (their pause kept), those no longer declared removed; each logged. A stored schedule of the
        same name made through the API becomes a declared one."""
        report = Reconciled()
        names = set()
        for wanted in declared:
            wanted = msgspec.structs.replace(wanted, declared=True)
            names.add(wanted.name)
            stored = await self._store.get(wanted.name)
            if stored is None:
                try:
                    created = await self.create(wanted)
                except ScheduleExists:  # another engine starting at the same time added it
                    stored = await self.get(wanted.name)
                else:
                    report.added.append(wanted.name)
                    log.info("schedule %r added: %s, task %s", wanted.name, created.describe, wanted.task)
                    continue
            same = all(
                getattr(wanted, field) == getattr(stored, field) for field in DEFINITION_FIELDS if field != "enabled"
            )
            if same and stored.declared:
                report.unchanged.append(wanted.name)
                continue
            fields = {field: getattr(wanted, field) for field in DEFINITION_FIELDS if field != "enabled"}
            changed = await self.update(wanted.name, declared=True, **fields)
            report.changed.append(wanted.name)
            log.info("schedule %r changed: %s, task %s", wanted.name, changed.describe, wanted.task)
        for stored in await self._store.list_schedules():
            if stored.declared and stored.name not in names and await self._store.delete(stored.name):
                report.removed.append(stored.name)
                log.info("schedule %r removed: no longer declared", stored.name)
        self._changed()
        return report

    # --- the scheduler --------------------------------------------------------------------------------

    def wake(self) -> None:
        """Look at the schedules again now (one changed, here or on another engine; or a test moved the clock)."""
        self._wake.set()

    def _changed(self) -> None:
        """A schedule changed here: this engine's scheduler and the other engines' look again now."""
        self.wake()
        if self._tell_others is not None:
            self._tell_others()

    async def start(self) -> None:
        """Reconcile the declared schedules, then run the scheduler until :meth:`stop`."""
        if self.declared is not None:
            await self.reconcile(self.declared)
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="geekblog scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiting in self._passes:
            if not waiting.done():
                waiting.cancel()
        self._passes.clear()

    async def next_pass(self) -> None:
        """Wake the scheduler and wait until it has fired what is due (tests move a fake clock, then call this)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._passes.append(future)
        self.wake()
        await future

    async def fire_due(self) -> int:
        """Fire every schedule due now (each at most one tick); how many jobs this stored."""
        fired = 0
        while True:
            now = self._clock.now()
            due = await self._store.due_schedules(now, _DUE_BATCH)
            for schedule in due:
                fired += await self._fire(schedule, now)
            if len(due) < _DUE_BATCH:
                return fired

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            waiting, self._passes = self._passes, []
            timeout: float | None
            try:
                await self.fire_due()
                due = await self._store.next_schedule_due()
                timeout = None if due is None else max(due - self._clock.now(), 0.0)
            except Exception:
                log.exception("the scheduler could not read or fire schedules; trying again shortly")
                timeout = _RETRY_SECONDS
            for future in waiting:
                if not future.done():
                    future.set_result(None)
            if self._reread is not None:
                timeout = self._reread if timeout is None else min(timeout, self._reread)
            if timeout is not None and timeout <= 0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _fire(self, schedule: Schedule, now: float) -> int:
        decision = firing(schedule, now)
        revision = self._ids.new_id()
        if decision.skipped:
            log.warning(
                "schedule %r missed %d tick(s) (policy %s)%s",
                schedule.name,
                decision.skipped,
                schedule.missed,
                "" if decision.tick is None else f"; running the tick of {iso_tick(decision.tick)}",
            )
        if decision.tick is None:
            advanced = msgspec.structs.replace(schedule, next_due_at=decision.next_due_at, revision=revision)
            await self._store.replace(advanced, revision=schedule.revision)  # lost: someone else moved it
            return 0
        try:
            job = self._job_for(schedule, decision.tick)
        except (DomainError, ValueError, TypeError) as exc:  # e.g. its task is not registered in this process
            log.error("schedule %r cannot send its tick of %s: %s", schedule.name, iso_tick(decision.tick), exc)
            advanced = msgspec.structs.replace(schedule, next_due_at=decision.next_due_at, revision=revision)
            await self._store.replace(advanced, revision=schedule.revision)
            return 0
        tick = ScheduleTick(
            schedule=schedule.name,
            tick=decision.tick,
            job_id=job.id,
            revision=schedule.revision,
            next_due_at=decision.next_due_at,
            new_revision=revision,
        )
        try:
            await self._jobs.queue_tick(job, tick)
        except Conflict:  # another engine fired it, or the schedule changed meanwhile: read it again
            log.debug("schedule %r: its tick of %s was taken or changed", schedule.name, iso_tick(decision.tick))
            return 0
        self.fired += 1
        return 1

    def _job_for(self, schedule: Schedule, tick: float) -> Job:
        options = dict(schedule.options)
        expires = options.pop("expires", None)
        signature = msgspec.convert(
            {
                "task": schedule.task,
                "args": schedule.args,
                "kwargs": schedule.kwargs,
                **options,
                **({} if expires is None else {"expires": tick + float(expires)}),
            },
            Signature,
        )
        job = self._jobs.new_job(signature)
        tagged = msgspec.structs.replace(job.options, schedule=schedule.name, tick=iso_tick(tick))
        return msgspec.structs.replace(job, options=tagged)

    def _checked(self, schedule: Schedule) -> Schedule:
        schedule.check()
        self._registry.require(schedule.task)
        try:
            self._job_for(schedule, 0.0 if not math.isfinite(schedule.anchor) else schedule.anchor)
        except msgspec.ValidationError as exc:
            raise ValueError(f"schedule {schedule.name!r}: invalid options: {exc}") from None
        return schedule
