"""Maintenance of a GeekBlog SQLite file: purging old finished work, and consistent online backups.

Plain ``sqlite3`` functions, so the ``geekblog purge`` and ``geekblog backup`` commands can run them on
the file directly, also while the service runs (WAL lets them work beside its writer), and the
repository runs the same purge statements through its writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

_TERMINAL: Final = "('SUCCESS', 'FAILURE', 'REVOKED')"

PURGE_WORKFLOWS_SQL: Final = f"""
    DELETE FROM workflows
    WHERE state IN {_TERMINAL} AND finished_at < :cutoff
      AND NOT EXISTS (
        SELECT 1 FROM jobs
        WHERE jobs.workflow_id = workflows.id AND (jobs.state NOT IN {_TERMINAL} OR jobs.finished_at >= :cutoff)
      )
"""
"""Finished workflows older than the cutoff, once every job of theirs is finished and older too."""

PURGE_JOBS_SQL: Final = f"""
    DELETE FROM jobs
    WHERE state IN {_TERMINAL} AND finished_at < :cutoff
      AND (workflow_id IS NULL OR NOT EXISTS (SELECT 1 FROM workflows WHERE workflows.id = jobs.workflow_id))
"""
"""Finished jobs older than the cutoff that are not part of a workflow that is still kept."""


class PurgeCounts(msgspec.Struct, frozen=True, kw_only=True):
    jobs: int
    workflows: int


class BackupReport(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    bytes: int
    jobs: int
    workflows: int


def purge(connection: sqlite3.Connection, cutoff: float) -> PurgeCounts:
    """Delete finished work older than ``cutoff`` (epoch seconds) in one transaction."""
    with connection:
        workflows = connection.execute(PURGE_WORKFLOWS_SQL, {"cutoff": cutoff}).rowcount
        jobs = connection.execute(PURGE_JOBS_SQL, {"cutoff": cutoff}).rowcount
    return PurgeCounts(jobs=jobs, workflows=workflows)


def open_existing(path: str | os.PathLike[str], *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """A connection to an existing GeekBlog database (never creates one); raises FileNotFoundError."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no database at {path}")
    connection = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    connection.isolation_level = ""  # transactions for `with connection:` blocks
    return connection


def backup(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """A consistent copy of ``source`` at ``target`` with SQLite's online backup API, checked for integrity.

    Written to a temporary file beside ``target`` and renamed into place, so ``target`` is either the
    old file or a complete, checked backup, never half of one.
    """
    target_path = Path(target)
    partial = target_path.with_name(target_path.name + ".partial")
    partial.unlink(missing_ok=True)
    with contextlib.closing(open_existing(source)) as src, contextlib.closing(sqlite3.connect(partial)) as dst:
        src.backup(
            dst, pages=256, progress=(lambda _status, left, total: progress(total - left, total)) if progress else None
        )
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
        dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
        jobs = dst.execute("SELECT count(*) FROM jobs").fetchone()[0]
        workflows = dst.execute("SELECT count(*) FROM workflows").fetchone()[0]
    os.replace(partial, target_path)
    return BackupReport(path=str(target_path), bytes=target_path.stat().st_size, jobs=jobs, workflows=workflows)
