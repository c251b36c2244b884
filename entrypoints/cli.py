"""The ``geekblog`` command: ``serve`` runs the service, ``worker`` the engine alone; ``purge``, ``backup`` and
``db upgrade`` work on the database; the other commands are HTTP clients of the service."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from entrypoints.exit_codes import EXIT_INTERRUPTED, EXIT_USAGE
from entrypoints.settings import Settings, SettingsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geekblog",
        description="GeekBlog Tasks: a durable task engine with Celery's programming model, on SQLite or PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the HTTP service and the engine (settings from GEEKBLOG_*)")
    serve.add_argument("--host", help="interface to listen on (default GEEKBLOG_HOST, else 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default GEEKBLOG_PORT, else 8000)")
    serve.set_defaults(handler=run_serve)
    worker = commands.add_parser(
        "worker",
        help="run the engine without HTTP, beside `serve` on one PostgreSQL database (settings from GEEKBLOG_*)",
        description="Run jobs without serving HTTP, as Celery workers run apart from the web process: any number"
        " of workers and `geekblog serve` processes share the jobs of one PostgreSQL database"
        " (GEEKBLOG_DATABASE_URL). On SQLite a worker runs only as the file's one engine.",
    )
    worker.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        help="jobs running at once (default GEEKBLOG_MAX_CONCURRENT_TASKS, else 10)",
    )
    worker.add_argument(
        "--queues",
        "-Q",
        type=_queue_list,
        metavar="NAME[:N],...",
        help="the named queues to take jobs from, each at most N at once if given, e.g. ai:2,default"
        " (default GEEKBLOG_QUEUES, else every queue)",
    )
    worker.set_defaults(handler=run_worker)
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--db", metavar="PATH", help="the database file (default GEEKBLOG_DB_PATH, else ./var/geekblog.db)"
    )
    database.add_argument("--json", action="store_true", help="print the outcome as JSON")
    purge = commands.add_parser(
        "purge",
        parents=[database],
        help="delete finished jobs and workflows older than a retention period (safe while serving)",
    )
    purge.add_argument(
        "--older-than", type=float, metavar="SECONDS", help="retention in seconds (default GEEKBLOG_RESULT_TTL)"
    )
    purge.set_defaults(handler=run_purge)
    backup = commands.add_parser(
        "backup", parents=[database], help="make a consistent online copy of the database (safe while serving)"
    )
    backup.add_argument("file", metavar="FILE", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="replace FILE if it exists")
    backup.set_defaults(handler=run_backup)
    db = commands.add_parser("db", help="the database's schema (GEEKBLOG_DATABASE_URL, else GEEKBLOG_DB_PATH)")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = db_commands.add_parser(
        "upgrade", help="apply the schema migrations it lacks (the service also does at start)"
    )
    upgrade.add_argument("--json", action="store_true", help="print the outcome as JSON")
    upgrade.set_defaults(handler=run_db_upgrade)
    from entrypoints.migrate.command import add_migrate_command

    add_migrate_command(commands)
    try:
        from entrypoints.client.commands import add_client_commands
    except ImportError:  # pragma: no cover - the client commands ship with the package
        pass
    else:
        add_client_commands(commands)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        overrides = {name: getattr(args, name) for name in ("host", "port") if getattr(args, name) is not None}
        if overrides:
            import msgspec

            settings = msgspec.structs.replace(settings, **overrides)
            settings.__post_init__()
    except SettingsError as exc:
        print(f"geekblog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from entrypoints.server import serve

    return serve(settings)


def run_worker(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
        import msgspec

        if args.concurrency is not None:
            settings = msgspec.structs.replace(settings, max_concurrent_tasks=args.concurrency)
        if args.queues is not None:
            settings = msgspec.structs.replace(settings, queues=args.queues)
    except SettingsError as exc:
        print(f"geekblog: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from entrypoints.worker import work

    return work(settings)


def _queue_list(text: str) -> str:
    from domain.queues import parse_queues

    try:
        parse_queues(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def run_purge(args: argparse.Namespace) -> int:
    from entrypoints.maintenance_commands import purge_command

    return purge_command(args)


def run_backup(args: argparse.Namespace) -> int:
    from entrypoints.maintenance_commands import backup_command

    return backup_command(args)


def run_db_upgrade(args: argparse.Namespace) -> int:
    from entrypoints.maintenance_commands import upgrade_command

    return upgrade_command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
