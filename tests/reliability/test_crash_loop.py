"""Quick mode of the crash-loop harness (``crash_loop.py``): 5 SIGKILLs of the real service under load, on
SQLite and on PostgreSQL (with a 3 s lease: there the restarted service recovers the killed one's jobs
once their leases expire).

The long mode is run by hand: ``python -m tests.reliability.crash_loop --kills 25 --seconds 300 --seed 1``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.crash_loop import Config, run
from tests.support.postgres import empty_tables_blocking

pytestmark = pytest.mark.slow  # long: a SIGKILLed child and its restart (make test still runs it)

KILLS = 5


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """None: the service's own SQLite file; else the run's PostgreSQL database, emptied."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    empty_tables_blocking(url)
    return url


def test_acknowledged_work_survives_repeated_sigkills(tmp_path: Path, database_url: str | None) -> None:
    config = Config.quick(kills=KILLS, seed=1, run_dir=tmp_path / "crash-loop", log=print, database_url=database_url)
    summary = run(config)
    report = summary.render()
    print(report)

    assert not summary.failures, report
    assert len(summary.kills) >= KILLS, report
    figures = summary.figures
    # The load must have been a real one for the invariants to mean anything.
    assert figures["jobs_checked"] >= 20, report
    assert figures["workflows_checked"] >= 5, report
    assert figures["projects_checked"] >= 1, report
    assert figures["acked_by_kind"].get("retry", 0) >= 1, report
    assert figures["acked_by_kind"].get("cancel", 0) >= 1, report
