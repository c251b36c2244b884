"""Maintenance of a GeekBlog SQLite file: purging old finished work, and consistent online backups.

Plain ``sqlite3`` functions, so the ``geekblog purge`` and ``geekblog backup`` commands can run them on
the file directly, also while the service runs (WAL lets them work beside its writer), and the
repository runs the same purge statements through its writer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from adapters.sqlite.files import PRIVATE_FILE

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

PURGE_TICKS_SQL: Final = """
    DELETE FROM schedule_ticks
    WHERE tick < :cutoff AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.id = schedule_ticks.job_id)
"""
"""Records of schedule ticks older than the cutoff whose job is gone (a schedule's revision, not these rows,
keeps its past ticks from firing again)."""


COMPANION_SUFFIXES: Final = ("", "-wal", "-shm", "-journal", ".lock")
"""The database file itself and the files beside it that belong to it: SQLite's WAL, shared memory and
rollback journal, and the engine's lock file."""


class BackupRefused(ValueError):
    """The backup cannot go where it was asked to (the database itself or one of its files, a directory)."""


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
        if connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'schedule_ticks'").fetchone():
            connection.execute(PURGE_TICKS_SQL, {"cutoff": cutoff})
    return PurgeCounts(jobs=jobs, workflows=workflows)


def open_existing(path: str | os.PathLike[str], *, busy_timeout_ms: int = 10_000) -> sqlite3.Connection:
    """A connection to an existing GeekBlog database (never creates one); raises FileNotFoundError."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no database at {path}")
    connection = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    connection.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    connection.isolation_level = "DEFERRED"  # transactions for `with connection:` blocks
    return connection


def companions(database: str | os.PathLike[str]) -> list[Path]:
    """The database's files (see :data:`COMPANION_SUFFIXES`), beside the path as given and beside its real path."""
    bases = {os.path.abspath(database), os.path.realpath(database)}
    return [Path(base + suffix) for base in sorted(bases) for suffix in COMPANION_SUFFIXES]


def check_backup_target(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Raise :class:`BackupRefused` when ``target`` is the database, one of its companion files (by real
    path, or by inode for a hard link to one) or a directory: replacing the live ``-wal`` with a backup
    loses every transaction in it."""
    real_target = Path(os.path.realpath(target))
    own = companions(source)
    if real_target in {Path(os.path.realpath(path)) for path in own} or _same_file_as_any(real_target, own):
        raise BackupRefused(
            f"{target} is the database {source} or one of its files (-wal, -shm, -journal, .lock):"
            " the backup must go to another file"
        )
    if real_target.is_dir():
        raise BackupRefused(f"{target} is a directory: give the backup's file name")


def _same_file_as_any(path: Path, others: list[Path]) -> bool:
    try:
        mine = path.stat()
    except OSError:
        return False
    for other in others:
        with contextlib.suppress(OSError):
            theirs = other.stat()
            if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
                return True
    return False


def backup(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """A consistent copy of ``source`` at ``target`` with SQLite's online backup API, checked for integrity.

    Refused (:class:`BackupRefused`) onto the database or its companion files, or a directory. Written to
    a new temporary file beside ``target`` (a unique ``.<name>.*.partial``, mode 0600) and renamed into place, so
    ``target`` is either the old file or a complete, checked backup, never half of one; a backup that
    fails removes its temporary file.
    """
    check_backup_target(source, target)
    target_path = Path(target)
    with contextlib.closing(open_existing(source)) as src:
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target_path.name}.", suffix=".partial", dir=target_path.parent)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot create a file in {target_path.parent}: {exc.strerror}") from None
        partial = Path(name)
        try:
            try:
                os.fchmod(fd, PRIVATE_FILE)  # mkstemp's 0600 is masked by the umask
            finally:
                os.close(fd)
            with contextlib.closing(sqlite3.connect(partial)) as dst:
                src.backup(
                    dst,
                    pages=256,
                    progress=(lambda _status, left, total: progress(total - left, total)) if progress else None,
                )
                check = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if check != "ok":
                    raise sqlite3.DatabaseError(f"the copy failed its integrity check: {check}")
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
                jobs = dst.execute("SELECT count(*) FROM jobs").fetchone()[0]
                workflows = dst.execute("SELECT count(*) FROM workflows").fetchone()[0]
            os.replace(partial, target_path)
        except BaseException:
            for leftover in (partial, *(Path(f"{partial}{suffix}") for suffix in ("-journal", "-wal", "-shm"))):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise
    return BackupReport(path=str(target_path), bytes=target_path.stat().st_size, jobs=jobs, workflows=workflows)
