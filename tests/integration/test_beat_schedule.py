"""Celery beat's schedules in code: ``crontab``, ``beat_schedule`` entries, ``embedded_engine(schedules=...)``
and ``current_app.conf.beat_schedule``, reconciled with the stored schedules at start (and logged)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.errors import UnknownTask
from domain.schedule import Schedule
from entrypoints.celery_compat import crontab, current_app, embedded_engine
from entrypoints.compat.beat import schedules_from_beat
from tests.integration import compat_tasks


@pytest.fixture
def clean_conf() -> Iterator[None]:
    conf = current_app.conf
    saved = (conf._beat_schedule, conf._beat_set, conf.timezone)
    try:
        yield
    finally:
        conf._beat_schedule, conf._beat_set, conf.timezone = saved


def test_crontab_takes_celerys_arguments() -> None:
    assert crontab().expression == "* * * * *"
    assert crontab(minute=0, hour=3).expression == "0 3 * * *"
    assert crontab(minute="*/15", day_of_week="mon-fri").expression == "*/15 * * * mon-fri"
    assert crontab(0, 0, day_of_month="1", month_of_year="1,7").expression == "0 0 1 1,7 *"
    with pytest.raises(ValueError, match="invalid cron"):
        crontab(hour=25)
    with pytest.raises(TypeError, match="nowfun"):
        crontab(nowfun=lambda: None)


def test_beat_entries_become_schedules() -> None:
    declared = schedules_from_beat(
        {
            "nightly": {"task": "compat.add", "schedule": crontab(minute=0, hour=3), "args": (1, 2)},
            "often": {"task": compat_tasks.add, "schedule": 30, "kwargs": {"y": 1}, "options": {"queue": "q"}},
            "td": {"task": "compat.add", "schedule": dt.timedelta(minutes=5), "missed": "run_once"},
            "text": {"task": "compat.add", "schedule": "*/5 * * * *", "timezone": "Europe/Paris"},
        },
        timezone="America/New_York",
    )
    by_name = {s.name: s for s in declared}
    assert by_name["nightly"].cron == "0 3 * * *" and by_name["nightly"].args == [1, 2]
    assert by_name["nightly"].timezone == "America/New_York"
    assert by_name["often"].task == "compat.add" and by_name["often"].every == 30.0
    assert by_name["often"].options == {"queue": "q"} and by_name["often"].kwargs == {"y": 1}
    assert by_name["td"].every == 300.0 and by_name["td"].missed == "run_once"
    assert by_name["text"].timezone == "Europe/Paris"
    assert all(s.declared for s in declared)


@pytest.mark.parametrize(
    ("entry", "error", "match"),
    [
        ({"schedule": 5}, ValueError, "needs 'task' and 'schedule'"),
        ({"task": "compat.add", "schedule": object()}, TypeError, "must be crontab"),
        ({"task": "compat.add", "schedule": 5, "extra": 1}, ValueError, "unknown key"),
        ({"task": "compat.add", "schedule": 5, "missed": "all"}, ValueError, "missed must be"),
        ({"task": "compat.add", "schedule": 0.1}, ValueError, "at least 1"),
        ({"task": "compat.add", "schedule": 5, "timezone": "Nowhere/City"}, ValueError, "unknown time zone"),
    ],
)
def test_malformed_entries_are_refused(entry: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        schedules_from_beat({"bad": entry})


async def test_embedded_engine_reconciles_declared_schedules_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, clean_conf: None
) -> None:
    caplog.set_level(logging.INFO, logger="application.schedules")
    db = str(tmp_path / "tasks.db")
    first = {
        "ping": {"task": "compat.add", "schedule": 1.0, "args": (2, 3)},
        "nightly": {"task": "compat.add", "schedule": crontab(minute=0, hour=3), "args": (0, 0)},
    }
    async with embedded_engine(db, task_modules=["tests.integration.compat_tasks"], schedules=first) as engine:
        assert engine.schedules is not None
        assert [s.name for s in await engine.schedules.list_schedules()] == ["nightly", "ping"]
        await engine.schedules.create(Schedule(name="made-by-api", task="compat.add", args=[1, 1], every=60.0))
        deadline = asyncio.get_running_loop().time() + 15
        while True:  # the every-second schedule fires and its job runs
            jobs = await engine.schedules.recent_jobs("ping")
            if jobs and jobs[-1].state == "SUCCESS":
                assert jobs[-1].result == 5 and jobs[-1].options.schedule == "ping"
                break
            assert asyncio.get_running_loop().time() < deadline, "the schedule never ran"
            await asyncio.sleep(0.05)
    assert "schedule 'ping' added: every 1s, task compat.add" in caplog.messages

    caplog.clear()
    current_app.conf.beat_schedule = {"ping": {"task": "compat.add", "schedule": 2.0, "args": (2, 3)}}
    async with embedded_engine(db, task_modules=["tests.integration.compat_tasks"]) as engine:
        assert engine.schedules is not None
        names = {s.name: s for s in await engine.schedules.list_schedules()}
        assert sorted(names) == ["made-by-api", "ping"]  # one made through the API is never removed
        assert names["ping"].every == 2.0
    assert "schedule 'ping' changed: every 2s, task compat.add" in caplog.messages
    assert "schedule 'nightly' removed: no longer declared" in caplog.messages


async def test_an_unknown_task_in_a_declared_schedule_stops_the_start(tmp_path: Path, clean_conf: None) -> None:
    with pytest.raises(UnknownTask):
        async with embedded_engine(str(tmp_path / "t.db"), schedules={"x": {"task": "no.such.task", "schedule": 10}}):
            pass


def test_the_readme_migration_is_five_lines_that_work(clean_conf: None) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Periodic schedules", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    exec(compile(code, "README.md", "exec"), {})
    declared = {
        s.name: s for s in schedules_from_beat(current_app.conf.beat_schedule, timezone=current_app.conf.timezone)
    }
    assert declared["nightly-report"].cron == "0 3 * * *" and declared["nightly-report"].timezone == "UTC"
    assert declared["ping"].every == 30.0 and declared["ping"].options == {"queue": "pings", "expires": 20}
