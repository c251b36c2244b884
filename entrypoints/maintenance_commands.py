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

from adapters.sqlite_maintenance import backup, open_existing, purge
from entrypoints.settings import Settings, SettingsError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


def purge_command(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        return _fail(str(exc), EXIT_USAGE)
    older_than = settings.result_ttl if args.older_than is None else args.older_than
    if older_than < 0:
        return _fail(f"--older-than must not be negative, got {older_than}", EXIT_USAGE)
    db = args.db or settings.db_path
    try:
        with contextlib.closing(open_existing(db)) as connection:
            counts = purge(connection, time.time() - older_than)
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
    target = Path(args.file)
    if target.exists() and not args.force:
        return _fail(f"{target} exists (use --force to replace it)", EXIT_USAGE)
    if target.resolve() == Path(db).resolve():
        return _fail("the backup must go to another file than the database", EXIT_USAGE)
    try:
        report = backup(db, target)
    except FileNotFoundError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (sqlite3.Error, OSError) as exc:
        return _fail(f"backup of {db} to {target} failed: {exc}", EXIT_UNAVAILABLE)
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
