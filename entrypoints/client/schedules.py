"""``geekblog schedules`` and ``geekblog schedule add|show|pause|resume|rm|run``: periodic schedules through the
service's ``/schedules`` API (what Celery beat did)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from entrypoints.client.errors import CommandError, UsageError
from entrypoints.client.render import jobs_table, short_time, table
from entrypoints.exit_codes import EXIT_OK

if TYPE_CHECKING:
    from entrypoints.client.http import ApiClient, Reply

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

Command = Callable[[Callable[[argparse.Namespace, "ApiClient"], int]], Callable[[argparse.Namespace], int]]


def add_schedule_commands(subparsers: SubParsers, common: argparse.ArgumentParser, command: Command) -> None:
    listing = subparsers.add_parser(
        "schedules", parents=[common], help="list the periodic schedules", description="List periodic schedules."
    )
    listing.set_defaults(handler=command(run_list))

    schedule = subparsers.add_parser(
        "schedule",
        help="add, show, pause, resume, remove or run a periodic schedule",
        description="Periodic schedules: a task sent on a cron expression or every N seconds.",
    )
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        parents=[common],
        help="create a schedule",
        description="Create a schedule: exactly one of --cron and --every.",
    )
    add.add_argument("name", metavar="NAME", help="the schedule's unique name")
    add.add_argument("task", metavar="TASK", help="a registered task name (see 'geekblog tasks')")
    add.add_argument("args", metavar="ARGS", nargs="?", help="positional arguments as a JSON array, e.g. '[1, 2]'")
    add.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object")
    add.add_argument("--options", metavar="JSON", help='apply_async options as a JSON object, e.g. \'{"queue": "q"}\'')
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help="a five-field cron expression, e.g. '*/5 * * * *'")
    when.add_argument("--every", metavar="S", type=float, help="seconds between runs (at least 1)")
    add.add_argument("--timezone", metavar="TZ", help="the IANA time zone --cron is read in (default UTC)")
    add.add_argument(
        "--missed", choices=("skip", "run_once"), help="after downtime: skip (default) or run_once (one catch-up)"
    )
    add.add_argument("--paused", action="store_true", help="create it paused")
    add.set_defaults(handler=command(run_add))

    for action, text, handler in (
        ("show", "show a schedule, its next runs and its last jobs", run_show),
        ("pause", "pause a schedule (its ticks are skipped until resumed)", run_pause),
        ("resume", "resume a paused schedule (from its next tick)", run_resume),
        ("rm", "delete a schedule (its jobs stay)", run_remove),
        ("run", "run a schedule's task now (its ticks are unchanged)", run_now),
    ):
        parser = actions.add_parser(action, parents=[common], help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("name", metavar="NAME", help="the schedule's name")
        parser.set_defaults(handler=command(handler))


def run_list(args: argparse.Namespace, client: ApiClient) -> int:
    reply = client.get("/schedules")
    if args.json:
        print(reply.text, flush=True)
        return EXIT_OK
    items = _document(reply).get("items") or []
    print(schedules_table(items) if items else "no schedules", flush=True)
    return EXIT_OK


def run_add(args: argparse.Namespace, client: ApiClient) -> int:
    body: dict[str, Any] = {"name": args.name, "task": args.task}
    for field, label, text, kind, description in (
        ("args", "ARGS", args.args, list, "a JSON array"),
        ("kwargs", "--kwargs", args.kwargs, dict, "a JSON object"),
        ("options", "--options", args.options, dict, "a JSON object"),
    ):
        if text is not None:
            body[field] = _json(text, label, kind, description)
    for field in ("cron", "every", "timezone", "missed"):
        if getattr(args, field) is not None:
            body[field] = getattr(args, field)
    if args.paused:
        body["enabled"] = False
    reply = client.post("/schedules", body)
    return _show(args, reply)


def run_show(args: argparse.Namespace, client: ApiClient) -> int:
    return _show(args, client.get(f"/schedules/{args.name}"))


def run_pause(args: argparse.Namespace, client: ApiClient) -> int:
    return _show(args, client.request("PATCH", f"/schedules/{args.name}", body={"enabled": False}))


def run_resume(args: argparse.Namespace, client: ApiClient) -> int:
    return _show(args, client.request("PATCH", f"/schedules/{args.name}", body={"enabled": True}))


def run_remove(args: argparse.Namespace, client: ApiClient) -> int:
    client.request("DELETE", f"/schedules/{args.name}")
    if not args.json:
        print(f"schedule {args.name} deleted", flush=True)
    return EXIT_OK


def run_now(args: argparse.Namespace, client: ApiClient) -> int:
    reply = client.post(f"/schedules/{args.name}/run")
    job = _document(reply)
    print(reply.text if args.json else str(job.get("id")), flush=True)
    return EXIT_OK


def schedules_table(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(item.get("name")),
            str(item.get("task")),
            _when(item),
            "enabled" if item.get("enabled") else "paused",
            short_time(item.get("next_run")),
            short_time(item.get("last_tick")),
        ]
        for item in items
    ]
    return table(["NAME", "TASK", "WHEN", "STATE", "NEXT RUN (UTC)", "LAST TICK (UTC)"], rows)


def schedule_details(item: dict[str, Any]) -> str:
    lines = [
        f"name:      {item.get('name')}",
        f"task:      {item.get('task')}",
        f"args:      {json.dumps(item.get('args'))}  kwargs: {json.dumps(item.get('kwargs'))}",
        f"when:      {_when(item)}",
        f"state:     {'enabled' if item.get('enabled') else 'paused'} (missed ticks: {item.get('missed')})",
        f"last tick: {short_time(item.get('last_tick'))} (UTC)",
        "next runs (UTC): " + (", ".join(short_time(run) for run in item.get("next_runs") or []) or "-"),
    ]
    jobs = item.get("last_jobs")
    if jobs:
        lines += ["last jobs:", jobs_table(jobs)]
    return "\n".join(lines)


def _when(item: dict[str, Any]) -> str:
    if item.get("cron"):
        return f"cron {item['cron']} ({item.get('timezone')})"
    return f"every {item.get('every'):g}s"


def _show(args: argparse.Namespace, reply: Reply) -> int:
    print(reply.text if args.json else schedule_details(_document(reply)), flush=True)
    return EXIT_OK


def _document(reply: Reply) -> dict[str, Any]:
    if not isinstance(reply.data, dict):
        raise CommandError(f"the service answered with an unexpected body: {reply.text[:80]}")
    return reply.data


def _json(text: str, label: str, kind: type[Any], description: str) -> Any:
    from entrypoints.client.commands import parse_json_argument

    value = parse_json_argument(text, label, kind, description)
    if not isinstance(value, kind):  # pragma: no cover - parse_json_argument checks it
        raise UsageError(f"{label} must be {description}")
    return value
