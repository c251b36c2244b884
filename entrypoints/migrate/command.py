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
    if args.apply or args.diff:
        if args.apply and args.diff:
            print("geekblog migrate: --apply and --diff exclude each other", file=sys.stderr)
            return EXIT_USAGE
        return rewrite_command(root, apply=args.apply)
    findings, unparsed, files = analyse(root)
    report = build_report(findings, unparsed, files)
    sys.stdout.write(render_json(report) + "\n" if args.json else render_table(report))
    return EXIT_FAILED if report.summary.unsupported else EXIT_OK


def rewrite_command(root: Path, apply: bool) -> int:
    """--diff prints what --apply writes; both list what was left untouched, on stderr."""
    from entrypoints.migrate.analyse import load, scan
    from entrypoints.migrate.rewrite import rewrite, unified_diff

    sources, unparsed = load(root)
    findings, apps, _ = scan(sources)
    changed, skipped = rewrite(sources, apps)
    for source, new in sorted(changed.items(), key=lambda item: item[0].shown):
        if apply:
            source.path.write_text(new, encoding="utf-8")
            print(f"rewrote {source.shown}")
        else:
            sys.stdout.write(unified_diff(source, new))
    unsupported = [f"{f.file}:{f.line}: {f.kind} {f.name}: {f.detail}" for f in findings if f.status == "unsupported"]
    for why in [*skipped, *unsupported, *(f"{u.file}: {u.reason}" for u in unparsed)]:
        print(f"left untouched: {why}", file=sys.stderr)
    return EXIT_FAILED if any(f.status == "unsupported" for f in findings) else EXIT_OK
