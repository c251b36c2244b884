"""The client sub-commands of ``geekblog``: submit, status, watch, cancel, retry, jobs, workflow, tasks, schedules.

Each talks to the service at ``--url`` (else ``GEEKBLOG_URL``, else the address ``GEEKBLOG_HOST`` and
``GEEKBLOG_PORT`` name, as ``geekblog serve`` listens on it, else ``http://127.0.0.1:8000``) with the
token in ``GEEKBLOG_API_TOKEN``; ``--json`` prints the service's JSON as it sent it. Errors are one
``geekblog: <message>`` line on stderr and an exit code: 1 the job or workflow ended FAILURE or REVOKED,
2 bad input or a request the service refused, 3 the service cannot be used (unreachable, 5xx, 401).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from entrypoints.client.arguments import DEFAULT_URL, count, default_url, header_value, iso_time, limit, seconds
from entrypoints.client.article import add_article_command
from entrypoints.client.errors import ClientError, CommandError, UsageError
from entrypoints.client.follow import FAILED_STATES, TERMINAL_STATES, Watcher, follow
from entrypoints.client.render import (
    ProgressLine,
    error_text,
    job_details,
    job_summary,
    jobs_table,
    tasks_table,
    to_json,
    workflow_details,
    workflow_summary,
)
from entrypoints.client.schedules import add_schedule_commands
from entrypoints.client.watchers import JobView, JsonLines, WorkflowView
from entrypoints.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE

if TYPE_CHECKING:
    from entrypoints.client.http import ApiClient, Reply

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

JOB_STATES = ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")

Handler = Callable[[argparse.Namespace, "ApiClient"], int]


def add_client_commands(subparsers: SubParsers) -> None:
    """Add the client commands to ``geekblog``'s sub-command parsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        metavar="URL",
        help=f"the service's base URL (default GEEKBLOG_URL, else GEEKBLOG_HOST:GEEKBLOG_PORT, else {DEFAULT_URL})",
    )
    common.add_argument("--json", action="store_true", help="print the service's JSON instead of text")

    submit = subparsers.add_parser(
        "submit", parents=[common], help="submit a job", description="Queue a run of a registered task."
    )
    submit.add_argument("task", metavar="TASK", help="a registered task name (see 'geekblog tasks')")
    submit.add_argument("args", metavar="ARGS", nargs="?", help="positional arguments as a JSON array, e.g. '[1, 2]'")
    submit.add_argument("--kwargs", metavar="JSON", help="keyword arguments as a JSON object, e.g. '{\"y\": 2}'")
    submit.add_argument("--countdown", metavar="S", type=seconds, help="start no sooner than S seconds from now")
    submit.add_argument(
        "--eta", metavar="TIME", type=iso_time, help="start no sooner than TIME (ISO 8601; UTC if no offset)"
    )
    submit.add_argument(
        "--max-retries", metavar="N", type=count, help="retries at most N times (default: the task's own)"
    )
    submit.add_argument(
        "--time-limit", metavar="S", type=seconds, help="stop the run after S seconds (default: the task's own)"
    )
    submit.add_argument("--routing-key", metavar="NAME", help="Celery's routing_key: the queue, when --queue is unset")
    submit.add_argument("--priority", metavar="N", type=int, help="higher runs first (-1000..1000)")
    submit.add_argument("--queue", metavar="NAME", help="the named queue the job waits in (default: default)")
    submit.add_argument(
        "--expires", metavar="S", type=seconds, help="not started within S seconds, the job ends REVOKED unrun"
    )
    submit.add_argument(
        "--concurrency-key",
        metavar="KEY",
        help="at most --concurrency-limit jobs with this key run at once (e.g. project:42)",
    )
    submit.add_argument(
        "--concurrency-limit", metavar="N", type=int, help="with --concurrency-key: how many at once (default 1)"
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        type=header_value,
        help="submit once: the same command again prints the same job; another under the key is refused",
    )
    _add_wait(submit, "wait for the job to finish and print its result (exit 1 if it fails)")
    submit.set_defaults(handler=_command(run_submit))

    status = subparsers.add_parser(
        "status", parents=[common], help="show a job or workflow", description="Show a job, or else a workflow."
    )
    status.add_argument("id", metavar="ID", help="a job or workflow id")
    status.set_defaults(handler=_command(run_status))

    watch = subparsers.add_parser(
        "watch",
        parents=[common],
        help="follow a job or workflow until it finishes",
        description="Follow a job (or workflow) live: progress bars on stderr, state changes as lines.",
    )
    watch.add_argument("id", metavar="ID", help="a job or workflow id")
    watch.add_argument("--timeout", metavar="S", type=seconds, help="give up after S seconds (exit 3)")
    watch.set_defaults(handler=_command(run_watch))

    cancel = subparsers.add_parser(
        "cancel", parents=[common], help="cancel a job or workflow", description="Revoke a job, or else a workflow."
    )
    cancel.add_argument("id", metavar="ID", help="a job or workflow id")
    cancel.set_defaults(handler=_command(run_cancel))

    retry = subparsers.add_parser(
        "retry", parents=[common], help="run a failed or revoked job again", description="Queue a job again."
    )
    retry.add_argument("id", metavar="ID", help="a FAILURE or REVOKED job's id")
    _add_wait(retry, "wait for the new run to finish and print its result (exit 1 if it fails)")
    retry.set_defaults(handler=_command(run_retry))

    jobs = subparsers.add_parser(
        "jobs", parents=[common], help="list jobs, newest first", description="List jobs, newest first."
    )
    jobs.add_argument("--state", type=str.upper, choices=JOB_STATES, help="only jobs in this state")
    jobs.add_argument("--task", help="only runs of this task")
    jobs.add_argument("--workflow-id", metavar="ID", help="only the steps of this workflow")
    jobs.add_argument("--schedule", metavar="NAME", help="only the jobs of this periodic schedule")
    jobs.add_argument("--queue", metavar="NAME", help="only the jobs of this named queue")
    jobs.add_argument("--limit", type=limit, default=20, help="at most this many (1..500, default 20)")
    jobs.add_argument("--cursor", help="the next_cursor of an earlier page")
    jobs.set_defaults(handler=_command(run_jobs))

    workflow = subparsers.add_parser(
        "workflow",
        parents=[common],
        help="submit a workflow (a canvas) from a JSON file",
        description=(
            'Submit a canvas: FILE holds {"canvas": C} or C, where C is {"task": ..., "args": [...]}, '
            '{"chain": [C, ...]}, {"group": [C, ...]} or {"chord": {"header": [C, ...], "body": C}}.'
        ),
    )
    workflow.add_argument("file", metavar="FILE", help="a JSON file, or - for stdin")
    _add_wait(workflow, "show steps as they finish, then print the result (exit 1 if it fails)")
    workflow.set_defaults(handler=_command(run_workflow))

    tasks = subparsers.add_parser(
        "tasks", parents=[common], help="list the registered tasks", description="List the tasks the service runs."
    )
    tasks.set_defaults(handler=_command(run_tasks))

    add_article_command(subparsers, common, _command)
    add_schedule_commands(subparsers, common, _command)


def _add_wait(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--wait", action="store_true", help=text)
    parser.add_argument("--timeout", metavar="S", type=seconds, help="with --wait: give up after S seconds (exit 3)")


# -- commands -----------------------------------------------------------------------------------------


def run_submit(args: argparse.Namespace, client: ApiClient) -> int:
    body: dict[str, Any] = {"task": args.task}
    if args.args is not None:
        body["args"] = parse_json_argument(args.args, "ARGS", list, "a JSON array")
    if args.kwargs is not None:
        body["kwargs"] = parse_json_argument(args.kwargs, "--kwargs", dict, "a JSON object")
    names = (
        "countdown",
        "eta",
        "priority",
        "max_retries",
        "time_limit",
        "queue",
        "routing_key",
        "expires",
        "concurrency_key",
        "concurrency_limit",
    )
    options = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if options:
        body["options"] = options
    key = args.idempotency_key
    reply = client.post("/jobs", body, headers=None if key is None else {"Idempotency-Key": key})
    job = _document(reply)
    if not args.wait:
        _print(reply.text if args.json else str(job["id"]))
        return EXIT_OK
    return _wait_for_job(args, client, str(job["id"]))


def run_status(args: argparse.Namespace, client: ApiClient) -> int:
    collection, reply = _job_or_workflow(client, args.id, "")
    document = _document(reply)
    if args.json:
        _print(reply.text)
    else:
        _print(job_details(document) if collection == "jobs" else workflow_details(document))
    return EXIT_FAILED if document.get("state") in FAILED_STATES else EXIT_OK


def run_watch(args: argparse.Namespace, client: ApiClient) -> int:
    try:
        return _watch(args, client, "jobs")
    except ClientError as exc:
        if exc.status != 404:
            raise
    try:
        return _watch(args, client, "workflows")
    except ClientError as exc:
        if exc.status != 404:
            raise
    raise ClientError(404, "Not found", f"no job or workflow with id {args.id!r}")


def run_cancel(args: argparse.Namespace, client: ApiClient) -> int:
    collection, reply = _job_or_workflow(client, args.id, "/cancel", method="POST", verb="cancel")
    document = _document(reply)
    if args.json:
        _print(reply.text)
    else:
        _print(f"{collection.rstrip('s')} {document.get('id')} {document.get('state')}")
    return EXIT_OK


def run_retry(args: argparse.Namespace, client: ApiClient) -> int:
    try:
        reply = client.post(f"/jobs/{args.id}/retry")
    except ClientError as exc:
        raise _refused(exc, "retry", "job", args.id) from None
    job = _document(reply)
    if args.wait:
        return _wait_for_job(args, client, str(job["id"]))
    _print(reply.text if args.json else f"job {job.get('id')} {job.get('state')} (queued again)")
    return EXIT_OK


def run_jobs(args: argparse.Namespace, client: ApiClient) -> int:
    params: dict[str, str | int] = {"limit": args.limit}
    filters = {
        "state": args.state,
        "task": args.task,
        "workflow_id": args.workflow_id,
        "schedule": args.schedule,
        "queue": args.queue,
    }
    params.update({name: value for name, value in filters.items() if value is not None})
    if args.cursor is not None:
        params["cursor"] = args.cursor
    reply = client.get("/jobs", params=params)
    page = _document(reply)
    if args.json:
        _print(reply.text)
        return EXIT_OK
    items = page.get("items") or []
    _print(jobs_table(items) if items else "no jobs")
    cursor = page.get("next_cursor")
    if cursor:
        again = [f"--{name.replace('_', '-')} {value}" for name, value in filters.items() if value is not None]
        hint = " ".join(["geekblog jobs", *again, f"--limit {args.limit}", f"--cursor {cursor}"])
        print(f"more: {hint}", file=sys.stderr, flush=True)
    return EXIT_OK


def run_workflow(args: argparse.Namespace, client: ApiClient) -> int:
    canvas = read_canvas(args.file)
    reply = client.post("/workflows", {"canvas": canvas})
    workflow = _document(reply)
    workflow_id = str(workflow["id"])
    if not args.wait:
        _print(reply.text if args.json else workflow_id)
        return EXIT_OK
    watcher: Watcher = Watcher()
    if not args.json:
        print(f"workflow {workflow_id} submitted", file=sys.stderr, flush=True)
        watcher = WorkflowView(client, workflow_id, out=sys.stderr, progress=_progress_line(), notes=sys.stderr)
    final = follow(client, "workflows", workflow_id, watcher, timeout=args.timeout)
    _finish(watcher)
    return _report_outcome(final, "workflow", args.json)


def run_tasks(args: argparse.Namespace, client: ApiClient) -> int:
    reply = client.get("/tasks")
    if args.json:
        _print(reply.text)
        return EXIT_OK
    tasks = reply.data if isinstance(reply.data, list) else []
    _print(tasks_table(tasks) if tasks else "no tasks")
    return EXIT_OK


# -- shared steps -------------------------------------------------------------------------------------


def parse_json_argument(text: str, label: str, kind: type[Any], description: str) -> Any:
    """``text`` decoded as JSON of type ``kind``, else a :class:`UsageError` naming ``label``."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except ValueError as exc:
        raise UsageError(f"{label} must be {description}: {exc}") from None
    except RecursionError:
        raise UsageError(f"{label} must be {description}: it nests too deeply") from None
    if not isinstance(value, kind):
        raise UsageError(f"{label} must be {description}, got {_json_kind(value)}: {_clip(text)}")
    return value


def read_canvas(file: str) -> dict[str, Any]:
    """The canvas in ``file`` (``-`` for stdin), which holds ``{"canvas": C}`` or ``C`` itself."""
    name = "stdin" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {name}: {reason}") from None
    document: dict[str, Any] = parse_json_argument(text, name, dict, 'a JSON object (a canvas, or {"canvas": ...})')
    if set(document) != {"canvas"}:
        return document
    canvas = document["canvas"]
    if not isinstance(canvas, dict):
        raise UsageError(f'{name}: "canvas" must be a JSON object, got {_json_kind(canvas)}')
    return canvas


def _wait_for_job(args: argparse.Namespace, client: ApiClient, job_id: str) -> int:
    watcher: Watcher = Watcher()
    if not args.json:
        progress = _progress_line() if sys.stderr.isatty() else None
        watcher = JobView(job_id, out=None, progress=progress, notes=sys.stderr)
    final = follow(client, "jobs", job_id, watcher, timeout=args.timeout)
    _finish(watcher)
    return _report_outcome(final, "job", args.json)


def _watch(args: argparse.Namespace, client: ApiClient, collection: str) -> int:
    watcher: Watcher
    if args.json:
        watcher = JsonLines(sys.stdout, sys.stderr)
    elif collection == "jobs":
        watcher = JobView(args.id, out=sys.stdout, progress=_progress_line(), notes=sys.stderr)
    else:
        watcher = WorkflowView(client, args.id, out=sys.stdout, progress=_progress_line(), notes=sys.stderr)
    final = follow(client, collection, args.id, watcher, timeout=args.timeout)
    _finish(watcher)
    document = _document(final)
    if not args.json:
        _print(job_summary(document) if collection == "jobs" else workflow_summary(document))
    return EXIT_FAILED if document.get("state") in FAILED_STATES else EXIT_OK


def _report_outcome(final: Reply, noun: str, as_json: bool) -> int:
    """Print a finished job's or workflow's result (or its JSON); its error on stderr. The exit code."""
    document = _document(final)
    state = document.get("state")
    if as_json:
        _print(final.text)
    elif state == "SUCCESS":
        _print(to_json(document.get("result")))
    if state in FAILED_STATES:
        print(f"geekblog: {noun} {document.get('id')} {state}: {error_text(document.get('error'))}", file=sys.stderr)
        return EXIT_FAILED
    if state not in TERMINAL_STATES:  # pragma: no cover - follow() only returns finished ones
        return EXIT_UNAVAILABLE
    return EXIT_OK


def _job_or_workflow(
    client: ApiClient, ident: str, suffix: str, *, method: str = "GET", verb: str = "find"
) -> tuple[str, Reply]:
    """``/jobs/{ident}{suffix}``, or if there is no such job ``/workflows/{ident}{suffix}``."""
    for collection in ("jobs", "workflows"):
        try:
            return collection, client.request(method, f"/{collection}/{ident}{suffix}")
        except ClientError as exc:
            if exc.status != 404:
                raise _refused(exc, verb, collection.rstrip("s"), ident) from None
    raise ClientError(404, "Not found", f"no job or workflow with id {ident!r}")


def _refused(exc: ClientError, verb: str, noun: str, ident: str) -> ClientError:
    """A 409 (the job's state forbids it) said as ``cannot cancel job X: ...``; other errors as they are."""
    if exc.status == 409:
        return ClientError(409, exc.title, f"cannot {verb} {noun} {ident}: {exc.detail}")
    return exc


def _document(reply: Reply) -> dict[str, Any]:
    if not isinstance(reply.data, dict):
        raise CommandError(f"the service answered with an unexpected body: {_clip(reply.text)}")
    return reply.data


def _progress_line() -> ProgressLine:
    return ProgressLine(sys.stderr)


def _finish(watcher: Watcher) -> None:
    if isinstance(watcher, JobView | WorkflowView):
        watcher.finish()


def _print(text: str) -> None:
    print(text, flush=True)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return kinds.get(type(value), "a number")


def _clip(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# -- the runner ---------------------------------------------------------------------------------------


def _command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """``handler`` with a client for ``--url`` and the token, its errors turned into one line and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            try:
                from entrypoints.client.http import ApiClient
            except ImportError as exc:  # pragma: no cover - httpx ships with the service
                raise CommandError(f"the client commands need httpx ({exc})") from None
            url = args.url or default_url()
            token = os.environ.get("GEEKBLOG_API_TOKEN") or None
            with ApiClient(url, token) as client:
                return handler(args, client)
        except CommandError as exc:
            _fail(exc.message)
            return exc.exit_code
        except BrokenPipeError:
            # stdout was closed early (``geekblog jobs | head``): stop quietly.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return EXIT_OK
        except Exception as exc:  # never a traceback: most likely the service answered something unexpected
            _fail(f"unexpected error: {type(exc).__name__}: {exc}")
            return EXIT_UNAVAILABLE

    return run


def _fail(message: str) -> None:
    print(f"geekblog: {' '.join(message.split())}", file=sys.stderr, flush=True)
