"""What ``geekblog migrate`` reports: one Finding per Celery construct, and the report's JSON and table shapes.

The JSON field names are a contract with tools that read ``geekblog migrate --json``.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

Kind = Literal[
    "app",
    "setting",
    "task",
    "call",
    "send_task",
    "canvas",
    "result",
    "bound",
    "beat",
    "signal",
    "routing",
    "eager",
    "serializer",
    "task_class",
]
Status = Literal["supported", "difference", "unsupported"]
STATUSES: Final[tuple[Status, ...]] = ("supported", "difference", "unsupported")


class Finding(msgspec.Struct, frozen=True, order=True):
    """One Celery construct at ``file:line``, how this engine treats it, and what to check or do instead."""

    file: str
    line: int
    kind: Kind
    name: str
    status: Status
    detail: str


class Unparsed(msgspec.Struct, frozen=True):
    """A file the analysis could not read (syntax newer than this Python, or not Python at all)."""

    file: str
    reason: str


class Summary(msgspec.Struct, frozen=True):
    """The counts by status and the verdict: ``ready`` when nothing is unsupported."""

    files: int
    supported: int
    difference: int
    unsupported: int
    unparsed: int
    verdict: str


class Report(msgspec.Struct, frozen=True):
    """The whole analysis, as ``--json`` prints it."""

    findings: list[Finding]
    summary: Summary
    unparsed: list[Unparsed]


def build_report(findings: list[Finding], unparsed: list[Unparsed], files: int) -> Report:
    ordered = sorted(findings)
    counts = {status: sum(1 for f in ordered if f.status == status) for status in STATUSES}
    if counts["unsupported"]:
        verdict = f"not ready: {counts['unsupported']} unsupported construct(s) to change first"
    elif counts["difference"]:
        verdict = f"ready, with {counts['difference']} difference(s) to check"
    else:
        verdict = "ready"
    summary = Summary(
        files=files,
        supported=counts["supported"],
        difference=counts["difference"],
        unsupported=counts["unsupported"],
        unparsed=len(unparsed),
        verdict=verdict,
    )
    return Report(findings=ordered, summary=summary, unparsed=sorted(unparsed, key=lambda u: u.file))


def render_json(report: Report) -> str:
    return msgspec.json.encode(report).decode()


def render_table(report: Report) -> str:
    """A human table: location, kind, name, status, then the detail; counts and the verdict at the end."""
    rows = [(f"{f.file}:{f.line}", f.kind, f.name, f.status, f.detail) for f in report.findings]
    header = ("LOCATION", "KIND", "NAME", "STATUS", "DETAIL")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in [header, *rows]
    ]
    for u in report.unparsed:
        lines.append(f"unparsed: {u.file}: {u.reason}")
    s = report.summary
    lines.append(
        f"{s.files} file(s): {s.supported} supported, {s.difference} difference(s), "
        f"{s.unsupported} unsupported, {s.unparsed} unparsed"
    )
    lines.append(f"verdict: {s.verdict}")
    return "\n".join(line.rstrip() for line in lines) + "\n"
