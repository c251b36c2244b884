"""``geekblog purge`` and ``geekblog backup``: maintenance on the SQLite file itself, also while serving;
and ``geekblog db upgrade``, which migrates the configured database (SQLite or PostgreSQL) by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

from application.ports import JobRepository, StorageUnavailable
from entrypoints.container import Container
from entrypoints.exit_codes import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from entrypoints.settings import Settings, SettingsError


def purge_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if settings.persistence == "postgres" and not args.db:
        return _fail(
            "geekblog purge works on a SQLite file; on PostgreSQL (GEEKBLOG_DATABASE_URL) the engine purges"
            " finished work itself every minute (GEEKBLOG_RESULT_TTL)",
            EXIT_USAGE,
        )
    older_than = settings.result_ttl if args.older_than is None else args.older_than
    if older_than < 0:
        return _fail(f"--older-than must not be negative, got {older_than}", EXIT_USAGE)
    db = args.db or settings.db_path
    files = Container(settings=settings).database_files()
    try:
        with contextlib.closing(files.open_existing(db)) as connection:
            counts = files.purge(connection, time.time() - older_than)
    except FileNotFoundError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except sqlite3.Error as exc:
        return _fail(f"cannot purge {db}: {exc}", EXIT_UNAVAILABLE)
    if args.json:
        print(msgspec.json.encode(counts).decode())
    else:
        print(f"purged {counts.jobs} job(s) and {counts.workflows} workflow(s) finished over {older_than:g} s ago")
    return EXIT_OK


def backup_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if settings.persistence == "postgres" and not args.db:
        return _fail(
            "geekblog backup copies a SQLite file; back PostgreSQL (GEEKBLOG_DATABASE_URL) up with its own tools"
            " (pg_dump)",
            EXIT_USAGE,
        )
    db = args.db or settings.db_path
    if not Path(db).is_file():
        return _fail(f"no database at {db}", EXIT_USAGE)
    target = Path(args.file)
    files = Container(settings=settings).database_files()
    try:
        files.check_backup_target(db, target)  # before --force: never the database's own files, nor a directory
    except files.BackupRefused as exc:
        return _fail(str(exc), EXIT_USAGE)
    if target.exists() and not args.force:
        return _fail(f"{target} exists (use --force to replace it)", EXIT_USAGE)
    if not target.parent.is_dir():
        return _fail(f"no directory {target.parent} for the backup", EXIT_USAGE)
    try:
        report = files.backup(db, target)
    except files.BackupRefused as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (sqlite3.Error, OSError) as exc:
        return _fail(f"backup of {db} to {target} failed: {_one_line(exc)}", EXIT_UNAVAILABLE)
    if args.json:
        print(json.dumps(msgspec.to_builtins(report)))
    else:
        print(
            f"backed up {db} to {report.path}: {report.bytes:,} bytes, {report.jobs} jobs, {report.workflows} workflows"
        )
    return EXIT_OK


def upgrade_command(args: argparse.Namespace) -> int:
    """Apply the schema migrations the configured database lacks (the engine also does at start)."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if settings.persistence == "memory":
        return _fail("GEEKBLOG_PERSISTENCE=memory: there is no database to upgrade", EXIT_USAGE)
    from entrypoints.engine_lifetime import storage_description

    where = storage_description(settings)
    repo = Container(settings=settings).storage_probe()
    try:
        outcome = asyncio.run(_open_and_close(repo))
    except StorageUnavailable as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except OSError as exc:
        return _fail(f"cannot use {where}: {exc.strerror or exc}", EXIT_UNAVAILABLE)
    if isinstance(repo, Migrated) and repo.schema_found is not None:
        found, applied = repo.schema_found, repo.migrations_applied
        outcome = {"database": where, "schema_found": found, "migrations_applied": applied}
        text = f"{where}: schema version {found + applied} ({applied} migration(s) applied, found {found})"
    else:
        outcome = {"database": where}
        text = f"{where}: schema up to date"
    print(json.dumps(outcome) if args.json else text)
    return EXIT_OK


@runtime_checkable
class Migrated(Protocol):
    """A repository that says what its last ``open()`` migrated (the PostgreSQL one does)."""

    @property
    def schema_found(self) -> int | None: ...

    @property
    def migrations_applied(self) -> int: ...


async def _open_and_close(repo: JobRepository) -> None:
    await repo.open()
    await repo.close()


def _fail(message: str, code: int) -> int:
    print(f"geekblog: {message}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
