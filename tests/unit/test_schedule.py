"""Schedule tick arithmetic (domain/schedule.py): cron in a time zone, intervals, DST, start/end, missed ticks."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from domain.schedule import (
    GRACE_SECONDS,
    Schedule,
    crontab_expression,
    firing,
    first_due,
    iso_tick,
    next_ticks,
    tick_after,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def at(*parts: int, tz: dt.tzinfo = dt.UTC, fold: int = 0) -> float:
    return dt.datetime(*parts, tzinfo=tz, fold=fold).timestamp()  # type: ignore[misc]


def local(ts: float, tz: dt.tzinfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).isoformat()


def cron(expr: str, tz: str = "UTC", **fields: object) -> Schedule:
    return Schedule(name="s", task="t", cron=expr, timezone=tz, **fields).check()  # type: ignore[arg-type]


def every(seconds: float, anchor: float = 0.0, **fields: object) -> Schedule:
    return Schedule(name="s", task="t", every=seconds, anchor=anchor, **fields).check()  # type: ignore[arg-type]


def test_cron_every_five_minutes_strictly_after() -> None:
    schedule = cron("*/5 * * * *")
    assert tick_after(schedule, at(2026, 1, 1, 10, 0)) == at(2026, 1, 1, 10, 5)
    assert tick_after(schedule, at(2026, 1, 1, 10, 0) - 0.5) == at(2026, 1, 1, 10, 0)
    assert tick_after(schedule, at(2026, 1, 1, 10, 2) + 0.25) == at(2026, 1, 1, 10, 5)


def test_cron_reads_its_time_zone() -> None:
    schedule = cron("0 9 * * mon-fri", "America/New_York")
    friday_evening = at(2026, 1, 2, 18, 0, tz=NEW_YORK)
    assert local(tick_after(schedule, friday_evening) or 0, NEW_YORK) == "2026-01-05T09:00:00-05:00"


def test_dst_spring_forward_runs_a_missing_time_once_after_the_gap() -> None:
    schedule = cron("30 2 * * *", "Europe/Paris")
    ticks = next_ticks(schedule, at(2026, 3, 28, 12, 0, tz=PARIS), 3)
    assert [local(tick, PARIS) for tick in ticks] == [
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that day: at the end of the gap, as cron does
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]


def test_dst_spring_forward_hourly_skips_the_missing_hour_without_doubling() -> None:
    ticks = next_ticks(cron("0 * * * *", "Europe/Paris"), at(2026, 3, 29, 0, 30, tz=PARIS), 3)
    assert [local(tick, PARIS) for tick in ticks] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T04:00:00+02:00",
    ]
    assert ticks[1] - ticks[0] == 3600


def test_dst_fall_back_fixed_time_runs_once() -> None:
    ticks = next_ticks(cron("30 2 * * *", "Europe/Paris"), at(2026, 10, 24, 12, 0, tz=PARIS), 2)
    assert [local(tick, PARIS) for tick in ticks] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_dst_fall_back_stepped_minutes_run_in_both_hours() -> None:
    ticks = next_ticks(cron("*/30 * * * *", "Europe/Paris"), at(2026, 10, 25, 1, 45, tz=PARIS), 4)
    assert [local(tick, PARIS) for tick in ticks] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
    ]
    assert all(b - a == 1800 for a, b in itertools.pairwise(ticks))


def test_interval_ticks_fall_on_the_anchor_grid() -> None:
    schedule = every(10, anchor=1000.0)
    assert tick_after(schedule, 1000.0) == 1010.0
    assert tick_after(schedule, 1003.7) == 1010.0
    assert tick_after(schedule, 995.0) == 1000.0
    assert next_ticks(schedule, 1010.0, 3) == [1020.0, 1030.0, 1040.0]


def test_start_and_end_bound_the_ticks() -> None:
    schedule = every(10, anchor=0.0, start_at=1005.0, end_at=1030.0)
    assert tick_after(schedule, 0.0) == 1005.0  # the grid starts at start_at
    assert next_ticks(schedule, 0.0, 10) == [1005.0, 1015.0, 1025.0]
    daily = cron("0 12 * * *", start_at=at(2026, 5, 1), end_at=at(2026, 5, 3, 12, 0))
    assert next_ticks(daily, at(2026, 1, 1), 10) == [at(2026, 5, 1, 12), at(2026, 5, 2, 12), at(2026, 5, 3, 12)]
    assert tick_after(daily, at(2026, 5, 3, 12)) is None


def test_first_due_is_the_first_tick_after_now_and_none_when_disabled() -> None:
    assert first_due(every(10, anchor=100.0), 100.0) == 110.0
    assert first_due(every(10, anchor=100.0), 120.0) == 130.0
    assert first_due(every(10, anchor=0.0, start_at=500.0), 120.0) == 500.0
    assert first_due(every(10, anchor=100.0, enabled=False), 120.0) is None


def test_on_time_tick_fires_and_the_next_follows() -> None:
    schedule = every(60, anchor=0.0, next_due_at=600.0)
    decision = firing(schedule, 600.5)
    assert (decision.tick, decision.next_due_at, decision.skipped) == (600.0, 660.0, 0)
    assert firing(schedule, 599.0).tick is None


def test_skip_fires_only_the_latest_tick_after_downtime_never_a_burst() -> None:
    schedule = every(10, anchor=0.0, next_due_at=100.0)
    decision = firing(schedule, 135.0)  # ticks 100, 110, 120, 130 passed while down
    assert (decision.tick, decision.next_due_at, decision.skipped) == (130.0, 140.0, 3)


def test_skip_drops_a_tick_later_than_the_grace() -> None:
    schedule = cron("0 3 * * *", next_due_at=at(2026, 1, 1, 3))
    decision = firing(schedule, at(2026, 1, 1, 3) + GRACE_SECONDS + 1)
    assert decision.tick is None
    assert decision.next_due_at == at(2026, 1, 2, 3)
    assert decision.skipped == 1
    assert firing(schedule, at(2026, 1, 1, 3) + GRACE_SECONDS).tick == at(2026, 1, 1, 3)


def test_run_once_catches_up_once_after_downtime() -> None:
    schedule = cron("0 3 * * *", missed="run_once", next_due_at=at(2026, 1, 1, 3))
    decision = firing(schedule, at(2026, 1, 4, 9))  # three days down: one run, for the latest tick
    assert decision.tick == at(2026, 1, 4, 3)
    assert decision.next_due_at == at(2026, 1, 5, 3)
    assert decision.skipped == 3


def test_long_downtime_of_a_one_second_interval_is_arithmetic() -> None:
    schedule = every(1, anchor=0.0, next_due_at=1.0, missed="run_once")
    decision = firing(schedule, 10_000_000.5)
    assert (decision.tick, decision.next_due_at) == (10_000_000.0, 10_000_001.0)


def test_ticks_past_the_end_finish_the_schedule() -> None:
    schedule = every(10, anchor=0.0, end_at=125.0, next_due_at=100.0)
    decision = firing(schedule, 200.0)
    assert decision.tick is None  # the latest tick (120) is 80 s late
    assert decision.next_due_at is None
    decision = firing(msgspec_replace(schedule, missed="run_once"), 200.0)
    assert (decision.tick, decision.next_due_at) == (120.0, None)


def msgspec_replace(schedule: Schedule, **changes: object) -> Schedule:
    import msgspec

    return msgspec.structs.replace(schedule, **changes)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"cron": "*/5 * * *"}, "five fields"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"every": 0.5}, "at least 1"),
        ({"every": float("nan")}, "every must be"),
        ({"cron": "* * * * *", "every": 5.0}, "exactly one"),
        ({}, "exactly one"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"cron": "* * * * *", "missed": "burst"}, "missed must be"),
        ({"cron": "* * * * *", "start_at": 10.0, "end_at": 5.0}, "before start_at"),
        ({"cron": "* * * * *", "start_at": 1e20}, "between 1970 and 9999"),
        ({"cron": "* * * * *", "end_at": float("inf")}, "between 1970 and 9999"),
        ({"every": float("inf")}, "every must be"),
        ({"cron": "* * * * *", "name": ""}, "schedule name"),
    ],
)
def test_malformed_schedules_are_refused(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"name": "s", "task": "t", **fields}
    with pytest.raises(ValueError, match=message):
        Schedule(**values).check()  # type: ignore[arg-type]


def test_celery_crontab_arguments_become_cron_fields() -> None:
    assert crontab_expression() == "* * * * *"
    assert crontab_expression(minute=0, hour="*/3") == "0 */3 * * *"
    assert crontab_expression(minute="30", hour=7, day_of_week="mon-fri") == "30 7 * * mon-fri"
    assert crontab_expression(minute=[0, 30], day_of_month="1", month_of_year="*/2") == "0,30 * 1 */2 *"
    with pytest.raises(ValueError, match="invalid cron"):
        crontab_expression(minute=99)


def test_iso_tick_is_utc_to_the_millisecond() -> None:
    assert iso_tick(at(2026, 3, 29, 1, 0, 5) + 0.25) == "2026-03-29T01:00:05.250Z"
