"""``geekblog purge`` and ``geekblog backup``: maintenance on the database file itself, also while serving."""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
import time
from pathlib import Path

import msgspec

from entrypoints.container import Container
from entrypoints.exit_codes import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from entrypoints.settings import Settings, SettingsError


def purge_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)
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


def _fail(message: str, code: int) -> int:
    print(f"geekblog: {message}", file=sys.stderr)
    return code


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
