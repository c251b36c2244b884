"""``geekblog migrate PATH [--apply] [--json] [--diff]``: the argparse wiring and the exit codes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from entrypoints.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def add_migrate_command(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate", help="find a Celery codebase's constructs and how they run here (--apply rewrites the safe ones)"
    )
    migrate.add_argument("path", metavar="PATH", help="a project directory or one .py file")
    migrate.add_argument("--apply", action="store_true", help="rewrite imports, decorators and schedules in place")
    migrate.add_argument("--diff", action="store_true", help="print the rewrite as a unified diff; write nothing")
    migrate.add_argument("--json", action="store_true", help="print the findings as JSON")
    migrate.set_defaults(handler=migrate_command)


def migrate_command(args: argparse.Namespace) -> int:
    from entrypoints.migrate.analyse import analyse
    from entrypoints.migrate.findings import build_report, render_json, render_table

    root = Path(args.path)
    if not root.exists() or (root.is_file() and root.suffix != ".py"):
        print(f"geekblog migrate: {args.path}: not a directory or a .py file", file=sys.stderr)
        return EXIT_USAGE
    findings, unparsed, files = analyse(root)
    report = build_report(findings, unparsed, files)
    sys.stdout.write(render_json(report) + "\n" if args.json else render_table(report))
    return EXIT_FAILED if report.summary.unsupported else EXIT_OK
