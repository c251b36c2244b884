"""Periodic schedules on a real ``geekblog serve`` process: the CLI commands, and an every-second schedule
whose ticks each get exactly one job across a SIGKILL of the service and its restart."""

from __future__ import annotations

import itertools
import signal
import sqlite3
import time
from datetime import datetime
from typing import Any

import httpx

from tests.e2e.conftest import Service, wait_for_state
from tests.e2e.test_cli import assert_one_line_error, run_cli


def schedule_jobs(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"schedule": name, "limit": 500}
    while True:
        page = client.get("/jobs", params=params).json()
        items += page["items"]
        if not page["next_cursor"]:
            return items
        params["cursor"] = page["next_cursor"]


def tick_seconds(jobs: list[dict[str, Any]]) -> list[float]:
    return sorted(datetime.fromisoformat(job["tick"].replace("Z", "+00:00")).timestamp() for job in jobs)


def wait_for_ticks(client: httpx.Client, name: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while len(jobs := schedule_jobs(client, name)) < count:
        assert time.monotonic() < deadline, f"only {len(jobs)} tick(s) of {name} after {timeout} s"
        time.sleep(0.1)
    return jobs


def contiguous(ticks: list[float]) -> bool:
    return all(round(b - a, 3) == 1.0 for a, b in itertools.pairwise(ticks))


def test_an_every_second_schedule_survives_sigkill_with_one_job_per_tick(service: Service) -> None:
    """Killed twice, each time at a tick's instant (as its job is being stored), and restarted: no tick is
    ever doubled, every tick while the service is up has its job, and the tick due at each restart fires."""
    with service.client() as client:
        created = client.post("/schedules", json={"name": "beat", "task": "e2e.add", "args": [1, 2], "every": 1})
        assert created.status_code == 201, created.text
    kills: list[tuple[float, float]] = []  # (killed at, ready again at)
    for phase in (0.0, 0.03):
        with service.client() as client:
            wait_for_ticks(client, "beat", len(stored_ticks(service)) + 3)
            next_run = client.get("/schedules/beat").json()["next_run"]
        time.sleep(max(datetime.fromisoformat(next_run).timestamp() + phase - time.time(), 0.0))
        assert service.stop(signal.SIGKILL) == -signal.SIGKILL
        killed_at = time.time()
        service.start()
        kills.append((killed_at, time.time()))
    with service.client() as client:
        jobs = wait_for_ticks(client, "beat", len(stored_ticks(service)) + 3)
        ticks = tick_seconds(jobs)
        assert len(ticks) == len(set(ticks)), f"a tick was doubled: {ticks}"
        assert all(round(tick - ticks[0], 3) == round(tick - ticks[0]) for tick in ticks), ticks  # one grid
        bounds = [0.0, *(killed for killed, _ in kills), float("inf")]
        for low, high in itertools.pairwise(bounds):  # every tick while up has its job, once
            assert contiguous([tick for tick in ticks if low < tick <= high]), (low, high, ticks)
        for killed, ready in kills:  # the tick due at each restart was not lost
            after = [tick for tick in ticks if tick > killed]
            assert after and after[0] <= ready + 1.0, (after[:1], killed, ready)
        for job in jobs:
            assert wait_for_state(client, f"/jobs/{job['id']}", {"SUCCESS"}, timeout=20)["result"] == 3


def stored_ticks(service: Service) -> list[float]:
    """The ticks stored before the kill, read from the database file itself (the service is down)."""
    with sqlite3.connect(service.db_path) as db:
        return [row[0] for row in db.execute("SELECT tick FROM schedule_ticks WHERE schedule = 'beat'")]


def test_schedule_commands(service: Service) -> None:
    url = service.url
    added = run_cli(
        "schedule", "add", "nightly", "e2e.add", "[1, 2]", "--cron", "0 3 * * *", "--timezone", "Europe/Paris", url=url
    )
    assert added.returncode == 0, added.stderr
    assert "cron 0 3 * * * (Europe/Paris)" in added.stdout and "enabled" in added.stdout
    listed = run_cli("schedules", url=url)
    assert listed.returncode == 0 and "nightly" in listed.stdout and "e2e.add" in listed.stdout
    paused = run_cli("schedule", "pause", "nightly", url=url)
    assert paused.returncode == 0 and "paused" in paused.stdout
    resumed = run_cli("schedule", "resume", "nightly", "--json", url=url)
    assert resumed.returncode == 0 and '"enabled":true' in resumed.stdout.replace(" ", "")
    ran = run_cli("schedule", "run", "nightly", url=url)
    assert ran.returncode == 0, ran.stderr
    job_id = ran.stdout.strip()
    with service.client() as client:
        done = wait_for_state(client, f"/jobs/{job_id}", {"SUCCESS"})
        assert done["schedule"] == "nightly" and done["result"] == 3
    jobs = run_cli("jobs", "--schedule", "nightly", url=url)
    assert jobs.returncode == 0 and job_id in jobs.stdout
    shown = run_cli("schedule", "show", "nightly", url=url)
    assert shown.returncode == 0 and "next runs (UTC):" in shown.stdout and job_id in shown.stdout
    assert run_cli("schedule", "rm", "nightly", url=url).returncode == 0
    assert_one_line_error(run_cli("schedule", "rm", "nightly", url=url), 2, "nightly")
    bad = run_cli("schedule", "add", "x", "e2e.add", "[1, 2]", "--cron", "* * *", url=url)
    assert_one_line_error(bad, 2, "five fields")
    dup = run_cli("schedule", "add", "y", "e2e.add", "[1, 2]", "--every", "60", url=url)
    assert dup.returncode == 0
    assert_one_line_error(run_cli("schedule", "add", "y", "e2e.add", "[1, 2]", "--every", "9", url=url), 2, "exists")
