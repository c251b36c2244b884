"""``geekblog db upgrade`` and the SQLite-only maintenance commands, run as the real executable, with
``GEEKBLOG_DATABASE_URL`` naming a PostgreSQL database of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.postgres import SCHEMA_VERSION
from tests.e2e.conftest import ROOT
from tests.e2e.test_cli import assert_one_line_error
from tests.support.postgres import create_database, drop_database

GEEKBLOG = Path(sys.executable).with_name("geekblog")


def run(*args: str, timeout: float = 60, **settings: str) -> subprocess.CompletedProcess[str]:
    """``geekblog ARGS`` with these ``GEEKBLOG_*`` settings and no others."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GEEKBLOG_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update({f"GEEKBLOG_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run([str(GEEKBLOG), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def fresh_url() -> Iterator[str]:
    url = create_database()
    try:
        yield url
    finally:
        drop_database(url)


def test_db_upgrade_migrates_a_new_postgres_database_then_finds_it_current(fresh_url: str) -> None:
    first = run("db", "upgrade", database_url=fresh_url)
    assert first.returncode == 0, first.stderr
    assert f"schema version {SCHEMA_VERSION} ({SCHEMA_VERSION} migration(s) applied, found 0)" in first.stdout
    assert "PostgreSQL at" in first.stdout

    again = run("db", "upgrade", "--json", database_url=fresh_url)
    assert again.returncode == 0, again.stderr
    outcome = json.loads(again.stdout)
    assert (outcome["schema_found"], outcome["migrations_applied"]) == (SCHEMA_VERSION, 0)


def test_db_upgrade_on_sqlite_opens_and_closes_the_file(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    done = run("db", "upgrade", db_path=str(db))
    assert done.returncode == 0, done.stderr
    assert f"SQLite at {db}: schema up to date" in done.stdout
    assert db.is_file()


def test_db_upgrade_of_a_database_that_is_not_there_is_one_line_without_the_password() -> None:
    missing = run("db", "upgrade", database_url="postgresql://postgres:s3cret@127.0.0.1:5432/gb_test_absent")
    line = assert_one_line_error(missing, 3, "gb_test_absent")
    assert "s3cret" not in line


def test_a_database_url_that_is_not_postgres_is_refused_at_start_with_one_line() -> None:
    for command in (["db", "upgrade"], ["serve"]):
        refused = run(*command, database_url="mysql://root@127.0.0.1/db")
        assert_one_line_error(refused, 2, "GEEKBLOG_DATABASE_URL", "postgresql://")


def test_the_sqlite_file_commands_refuse_postgres_with_one_line(fresh_url: str, tmp_path: Path) -> None:
    purge = run("purge", database_url=fresh_url)
    assert_one_line_error(purge, 2, "SQLite file", "GEEKBLOG_RESULT_TTL")
    backup = run("backup", str(tmp_path / "copy.db"), database_url=fresh_url)
    assert_one_line_error(backup, 2, "SQLite file", "pg_dump")
    assert not (tmp_path / "copy.db").exists()
