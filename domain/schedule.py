"""Periodic schedules (what Celery beat did): a task sent on a cron expression or every N seconds.

Pure tick arithmetic, no I/O: given a :class:`Schedule` and a time, which tick is due, which comes next,
and what the missed-tick policy does after downtime. Times are epoch seconds (floats) as jobs store them;
cron expressions are read in the schedule's IANA time zone with ``cronsim``, which handles daylight-saving
changes as Debian's cron does: a time that does not exist on the spring-forward day runs at the first
minute after the gap (``30 2 * * *`` runs at 03:00), a fixed time in the repeated hour of the fall-back day
runs once (its first occurrence), and wildcard or stepped hours run in both occurrences.

**When a tick counts as missed.** A tick is on time while it is at most :data:`GRACE_SECONDS` late and no
later tick is due yet; only the latest due tick can ever fire, so downtime never causes a burst. After
downtime (or any delay past the grace), policy ``skip`` (the default) fires the latest due tick only if it
is within the grace, and ``run_once`` fires it in any case (one catch-up run). The ticks in between are
skipped either way.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from cronsim import CronSim, CronSimError

from domain.canvas import MAX_COUNTDOWN

MissedPolicy = Literal["skip", "run_once"]
MISSED_POLICIES: Final = ("skip", "run_once")

GRACE_SECONDS: Final[float] = 60.0
"""How late a tick may fire and still be on time (a slow start, a restart of a few seconds)."""

LATEST_TIME: Final[float] = 253_402_300_799.0
"""The last second of year 9999 (UTC): the latest ``start_at``/``end_at``."""

MIN_EVERY_SECONDS: Final[float] = 1.0
"""The shortest interval a schedule accepts: one job a second."""

_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@ -]{0,199}$")
_SEARCH_LIMIT: Final = 100_000
"""Ticks walked at most to find the latest due one (a 1 s interval after a day of downtime: 86,400)."""


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """One periodic schedule as stored: what to send, when, and where it stands.

    Exactly one of ``cron`` (five fields, read in ``timezone``) and ``every`` (seconds) is set. Interval
    ticks fall at ``anchor + k * every`` (``anchor``: ``start_at``, else when the interval was set).
    ``start_at``/``end_at`` bound the ticks (epoch seconds, inclusive). ``options`` are
    ``apply_async`` options (``queue``, ``priority``, ``expires`` in seconds ...). ``next_due_at`` is the
    next tick to fire (None: paused, or past ``end_at``); ``revision`` changes at every write, and a
    tick fires only on the revision it was planned on (so a change, a pause or another replica's fire
    makes a stale fire lose).
    """

    name: str
    task: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    start_at: float | None = None
    end_at: float | None = None
    enabled: bool = True
    missed: MissedPolicy = "skip"
    anchor: float = 0.0
    next_due_at: float | None = None
    revision: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    last_tick: float | None = None
    declared: bool = False
    """Declared in code (``embedded_engine(schedules=...)``, ``beat_schedule``): reconciled at start, removed
    when no longer declared. Schedules made through the API or the CLI are never removed that way."""

    def check(self) -> Schedule:
        """This schedule if it is well formed; ValueError naming what is not."""
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                "a schedule name is 1 to 200 characters: letters, digits and _ . : @ - or space, not first"
            )
        if not self.task:
            raise ValueError("a schedule needs a task name")
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule needs exactly one of cron and every")
        if self.cron is not None:
            check_cron(self.cron)
        if self.every is not None and not MIN_EVERY_SECONDS <= self.every <= LATEST_TIME:
            raise ValueError(f"every must be a number of seconds, at least {MIN_EVERY_SECONDS:g}")
        zone(self.timezone)
        unknown = sorted(set(self.options) - set(SCHEDULE_OPTIONS))
        if unknown:
            raise ValueError(f"unknown schedule option(s) {', '.join(unknown)}: use {', '.join(SCHEDULE_OPTIONS)}")
        expires = self.options.get("expires")
        if expires is not None and (
            isinstance(expires, bool) or not isinstance(expires, (int, float)) or not 0 <= expires <= MAX_COUNTDOWN
        ):
            raise ValueError(
                f"expires must be a number of seconds after the tick, from 0 to {MAX_COUNTDOWN:.0f}, got {expires!r}"
            )
        if self.missed not in MISSED_POLICIES:
            raise ValueError(f"missed must be one of {', '.join(MISSED_POLICIES)}, not {self.missed!r}")
        for label, value in (("start_at", self.start_at), ("end_at", self.end_at)):
            if value is not None and not 0 <= value <= LATEST_TIME:
                raise ValueError(f"{label} must be a time between 1970 and 9999")
        if self.start_at is not None and self.end_at is not None and self.end_at < self.start_at:
            raise ValueError("end_at is before start_at")
        return self

    @property
    def describe(self) -> str:
        """``cron '*/5 * * * *' (Europe/Paris)`` or ``every 30s``, for log lines."""
        if self.cron is not None:
            return f"cron {self.cron!r} ({self.timezone})"
        return f"every {self.every:g}s"

    def same_definition(self, other: Schedule) -> bool:
        """Whether ``other`` declares the same schedule (what is sent, when), whatever its stored state."""
        return all(getattr(self, field) == getattr(other, field) for field in DEFINITION_FIELDS)


SCHEDULE_OPTIONS: Final = (
    "queue",
    "routing_key",
    "priority",
    "expires",
    "time_limit",
    "soft_time_limit",
    "max_retries",
    "headers",
    "ignore_result",
    "concurrency_key",
    "concurrency_limit",
)
"""``apply_async`` options a schedule's jobs may carry; ``expires`` is in seconds after the tick, as Celery
beat users give it; ``concurrency_key`` (with ``concurrency_limit``) makes a periodic job "one at a time"."""

DEFINITION_FIELDS: Final = (
    "task",
    "args",
    "kwargs",
    "options",
    "cron",
    "every",
    "timezone",
    "start_at",
    "end_at",
    "enabled",
    "missed",
)
"""The fields a user declares; the others are the schedule's stored state."""

TIMING_FIELDS: Final = ("cron", "every", "timezone", "start_at", "end_at")
"""Fields whose change moves the schedule's next tick."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ValueError(f"unknown time zone {name!r}: give an IANA name such as 'Europe/Paris' or 'UTC'") from None


def check_cron(expression: str) -> None:
    """ValueError unless ``expression`` is a five-field cron expression."""
    if not isinstance(expression, str) or len(expression.split()) != 5:
        raise ValueError(f"cron must have five fields (minute hour day month weekday), not {expression!r}")
    try:
        CronSim(expression, dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    except CronSimError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None


def tick_after(schedule: Schedule, after: float) -> float | None:
    """The first tick strictly after ``after`` (and not before ``start_at``); None past ``end_at``."""
    if schedule.start_at is not None and after < schedule.start_at:
        after = math.nextafter(schedule.start_at, -math.inf)
    if schedule.every is not None:
        anchor = schedule.start_at if schedule.start_at is not None else schedule.anchor
        steps = max(math.floor((after - anchor) / schedule.every) + 1, 0)
        tick = anchor + steps * schedule.every
        while tick <= after:  # float rounding
            steps += 1
            tick = anchor + steps * schedule.every
    else:
        assert schedule.cron is not None
        tz = zone(schedule.timezone)
        start = dt.datetime.fromtimestamp(math.floor(after), tz)
        tick = next(iter(CronSim(schedule.cron, start))).timestamp()
        # cronsim works in whole seconds (strictly after ``start``); a fractional ``after`` may equal it
        if tick <= after:
            tick = next(iter(CronSim(schedule.cron, dt.datetime.fromtimestamp(tick, tz)))).timestamp()
    if schedule.end_at is not None and tick > schedule.end_at:
        return None
    return tick


def next_ticks(schedule: Schedule, after: float, count: int) -> list[float]:
    """The next ``count`` ticks after ``after`` (fewer past ``end_at``)."""
    ticks: list[float] = []
    at = after
    while len(ticks) < count:
        tick = tick_after(schedule, at)
        if tick is None:
            break
        ticks.append(tick)
        at = tick
    return ticks


class Firing(msgspec.Struct, frozen=True, kw_only=True):
    """What to do with a schedule whose tick is due at ``now``: fire ``tick`` (None: fire nothing, every
    due tick is missed) and store ``next_due_at`` as its next tick; ``skipped`` ticks were missed."""

    tick: float | None
    next_due_at: float | None
    skipped: int = 0


def firing(schedule: Schedule, now: float) -> Firing:
    """The decision for ``schedule`` at ``now``, its ``next_due_at`` due (see the module's docstring)."""
    due = schedule.next_due_at
    if due is None or due > now:
        return Firing(tick=None, next_due_at=due)
    latest, walked = _latest_due(schedule, due, now)
    following = tick_after(schedule, max(latest, now))
    on_time = now - latest <= GRACE_SECONDS
    fire = on_time or schedule.missed == "run_once"
    return Firing(tick=latest if fire else None, next_due_at=following, skipped=walked + (0 if fire else 1))


def _latest_due(schedule: Schedule, due: float, now: float) -> tuple[float, int]:
    """The latest tick at or before ``now`` from ``due`` (a tick) on, and how many ticks lie between."""
    limit = now if schedule.end_at is None else min(now, schedule.end_at)
    if schedule.every is not None:
        steps = max(math.floor((limit - due) / schedule.every), 0)
        return due + steps * schedule.every, steps
    assert schedule.cron is not None
    tz = zone(schedule.timezone)
    latest, walked = due, 0
    for moment in CronSim(schedule.cron, dt.datetime.fromtimestamp(due, tz)):
        tick = moment.timestamp()
        if tick > limit or walked >= _SEARCH_LIMIT:
            break
        latest, walked = tick, walked + 1
    return latest, walked


def first_due(schedule: Schedule, now: float) -> float | None:
    """The next tick of a schedule being created, changed or resumed at ``now``: the first after ``now``
    (as Celery beat, an interval first runs one interval after it is set; ``start_at`` counts when it is
    later), or None when disabled or finished."""
    if not schedule.enabled:
        return None
    return tick_after(schedule, now)


def iso_tick(tick: float) -> str:
    """A tick as ISO-8601 in UTC (what jobs carry as ``tick``), to the millisecond."""
    moment = dt.datetime.fromtimestamp(tick, dt.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def crontab_expression(
    minute: object = "*",
    hour: object = "*",
    day_of_week: object = "*",
    day_of_month: object = "*",
    month_of_year: object = "*",
) -> str:
    """The five-field cron expression of Celery's ``crontab(...)`` arguments (in Celery's order)."""
    fields = [minute, hour, day_of_month, month_of_year, day_of_week]
    text = " ".join(_cron_field(value) for value in fields)
    check_cron(text)
    return text


def _cron_field(value: object) -> str:
    if isinstance(value, bool):
        raise TypeError("a crontab field is a string, an int or a collection of ints, not a bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        text = value.replace(" ", "")
        if not text:
            raise ValueError("an empty crontab field")
        return text
    if isinstance(value, (list, tuple, set, frozenset, range)):
        items = sorted(value)
        if not items or not all(isinstance(item, int) and not isinstance(item, bool) for item in items):
            raise TypeError("a crontab field collection holds ints")
        return ",".join(str(item) for item in items)
    raise TypeError(f"a crontab field is a string, an int or a collection of ints, not {type(value).__name__}")
