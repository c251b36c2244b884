"""What people read: tables, one-line summaries, job and workflow details, and a progress bar."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO


def to_json(value: Any) -> str:
    """``value`` as one line of JSON (results are printed this way: ``"text"``, ``[1, 2]``, ``null``)."""
    return json.dumps(value, ensure_ascii=False)


def short_id(ident: str) -> str:
    return ident[:8]


def short_time(stamp: str | None) -> str:
    """``2026-11-28T12:04:43.439890+00:00`` as ``2026-11-28 12:04:43`` (the service answers in UTC)."""
    if not stamp:
        return "-"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return stamp


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart; no trailing spaces."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)


def jobs_table(jobs: Sequence[dict[str, Any]]) -> str:
    rows = [
        [
            str(job.get("id")),
            str(job.get("task")),
            str(job.get("state")),
            str(job.get("attempts")),
            short_time(job.get("created_at")),
        ]
        for job in jobs
    ]
    return table(["ID", "TASK", "STATE", "ATTEMPTS", "CREATED"], rows)


def tasks_table(tasks: Sequence[dict[str, Any]]) -> str:
    rows = [[str(task.get("name")), parameters_text(task) or "-", first_line(task.get("doc"))] for task in tasks]
    return table(["NAME", "PARAMETERS", "DESCRIPTION"], rows)


def parameters_text(task: dict[str, Any]) -> str:
    """``x: float, y: float = 2, *args, **kwargs``: the task's ``signature``, its ``parameters`` from an older
    service that sends no signature."""
    signature = task.get("signature")
    if not isinstance(signature, list) or len(signature) != len(task.get("parameters") or []):
        return ", ".join(task.get("parameters") or [])
    texts = []
    for parameter in signature:
        name = str(parameter.get("name"))
        kind = parameter.get("kind")
        text = f"*{name}" if kind == "args" else f"**{name}" if kind == "kwargs" else name
        if parameter.get("type"):
            text += f": {parameter['type']}"
        if not parameter.get("required") and kind not in ("args", "kwargs"):
            text += f" = {json.dumps(parameter.get('default'))}"
        texts.append(text)
    return ", ".join(texts)


def first_line(text: str | None) -> str:
    for line in (text or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


def error_text(error: dict[str, Any] | None) -> str:
    """``ValueError: kaput`` (first line of the message only)."""
    if not error:
        return "no error details"
    message = first_line(str(error.get("message") or ""))
    kind = str(error.get("type") or "Error")
    return f"{kind}: {message}" if message else kind


def progress_counts(progress: dict[str, Any] | None) -> tuple[float, float] | None:
    """``(done, total)`` from a progress meta with ``done``/``total`` or ``current``/``total``."""
    meta = (progress or {}).get("meta")
    if not isinstance(meta, dict):
        return None
    done = meta.get("done", meta.get("current"))
    total = meta.get("total")
    numbers = (int, float)
    if isinstance(done, numbers) and isinstance(total, numbers) and not isinstance(done, bool) and total > 0:
        return float(done), float(total)
    return None


def progress_bar(done: float, total: float, width: int = 30) -> str:
    """``[##########--------------------]  1/3  33%``."""
    fraction = min(max(done / total, 0.0), 1.0)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}]  {_number(done)}/{_number(total)}  {fraction:4.0%}"


def progress_text(progress: dict[str, Any] | None) -> str:
    """A bar when the meta counts, else the custom state and its meta."""
    counts = progress_counts(progress)
    if counts is not None:
        return progress_bar(*counts)
    state = (progress or {}).get("state") or "PROGRESS"
    meta = (progress or {}).get("meta")
    return state if meta is None else f"{state} {to_json(meta)}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def outcome(document: dict[str, Any]) -> str:
    """``result 3`` or ``ValueError: kaput`` or ``-`` for a job or workflow, by its state."""
    state = document.get("state")
    if state == "SUCCESS":
        return f"result {to_json(document.get('result'))}"
    if document.get("error"):
        return error_text(document.get("error"))
    return ""


def job_summary(job: dict[str, Any]) -> str:
    """One line: ``job 1f23f7ca-... e2e.add SUCCESS (attempt 1): result 3``."""
    line = f"job {job.get('id')} {job.get('task')} {job.get('state')} (attempt {job.get('attempts')})"
    tail = outcome(job)
    return f"{line}: {tail}" if tail else line


def workflow_summary(workflow: dict[str, Any]) -> str:
    nodes = workflow.get("nodes") or []
    line = f"workflow {workflow.get('id')} {workflow.get('state')} ({len(nodes)} steps)"
    tail = outcome(workflow)
    return f"{line}: {tail}" if tail else line


def step_line(node: str | None, task: str | None, job_id: str, state: str, tail: str = "") -> str:
    """``  step 1.0  e2e.add  3f1c2a9b  SUCCESS  result 4``."""
    parts = ["  step", node or "?", str(task or "?"), short_id(job_id), state]
    if tail:
        parts.append(tail)
    return "  ".join(parts)


def job_details(job: dict[str, Any]) -> str:
    pairs: list[tuple[str, str]] = [
        ("id", str(job.get("id"))),
        ("task", str(job.get("task"))),
        ("state", str(job.get("state"))),
        ("attempts", f"{job.get('attempts')} (max retries {job.get('max_retries')})"),
    ]
    if job.get("workflow_id"):
        pairs.append(("workflow", f"{job.get('workflow_id')} (step {job.get('node')})"))
    pairs.append(("args", to_json(job.get("args"))))
    if job.get("kwargs"):
        pairs.append(("kwargs", to_json(job.get("kwargs"))))
    if job.get("progress"):
        pairs.append(("progress", progress_text(job.get("progress"))))
    pairs.append(("created", short_time(job.get("created_at"))))
    if job.get("started_at"):
        pairs.append(("started", short_time(job.get("started_at"))))
    if job.get("finished_at"):
        pairs.append(("finished", short_time(job.get("finished_at"))))
    if job.get("state") == "SUCCESS":
        pairs.append(("result", to_json(job.get("result"))))
    elif job.get("error"):
        pairs.append(("error", error_text(job.get("error"))))
    return _pairs(pairs)


def workflow_details(workflow: dict[str, Any]) -> str:
    pairs: list[tuple[str, str]] = [
        ("id", str(workflow.get("id"))),
        ("kind", "workflow"),
        ("state", str(workflow.get("state"))),
        ("created", short_time(workflow.get("created_at"))),
    ]
    if workflow.get("finished_at"):
        pairs.append(("finished", short_time(workflow.get("finished_at"))))
    if workflow.get("state") == "SUCCESS":
        pairs.append(("result", to_json(workflow.get("result"))))
    elif workflow.get("error"):
        pairs.append(("error", error_text(workflow.get("error"))))
    text = _pairs(pairs)
    nodes = workflow.get("nodes") or []
    if nodes:
        rows = [
            [str(n.get("node") or "-"), str(n.get("task")), str(n.get("state")), str(n.get("job_id"))] for n in nodes
        ]
        steps = table(["STEP", "TASK", "STATE", "JOB"], rows)
        text += "\nsteps:\n" + "\n".join(f"  {line}" for line in steps.splitlines())
    return text


def _pairs(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {value}" for name, value in pairs)


class ProgressLine:
    """A progress display on ``stream``: redrawn in place on a terminal, else one line per change."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()
        self._shown = ""
        self._drawn = False

    def update(self, text: str) -> None:
        if text == self._shown:
            return
        self._shown = text
        if self.live:
            self.stream.write(f"\r{text}\x1b[K")
            self._drawn = True
        else:
            self.stream.write(f"{text}\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the live line so that what follows starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False
        self._shown = ""
