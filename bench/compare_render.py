"""The tables and the page of ``bench/compare.py``: medians of the harness's JSON results, ratios, targets.

Two comparisons, each its own table: GeekBlog on SQLite (service, embedded) against Celery (Redis) and Huey
(SQLite), and GeekBlog on PostgreSQL (1, 2 and 3 engine processes on one database, a Python client beside a
worker, the engine embedded in the driver) against the peers the harness runs on PostgreSQL (procrastinate,
PgQueuer) and DBOS. Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from pathlib import Path
from typing import Any, NamedTuple

TITLES = {
    "geekblog_service": "GeekBlog service",
    "geekblog_embedded": "GeekBlog embedded",
    "geekblog_pg_1": "GeekBlog PG, 1 engine",
    "geekblog_pg_2": "GeekBlog PG, 2 engines",
    "geekblog_pg_3": "GeekBlog PG, 3 engines",
    "geekblog_pg_client_1": "GeekBlog PG, Python client + 1 worker",
    "geekblog_pg_embedded": "GeekBlog PG, embedded (1 process)",
    "celery": "Celery",
    "huey": "Huey",
    "procrastinate_pg": "procrastinate",
    "pgqueuer_pg": "PgQueuer",
    "dbos_sqlite": "DBOS (SQLite)",
}
SHORT = {
    "geekblog_service": "service",
    "geekblog_embedded": "embedded",
    "geekblog_pg_1": "PG 1",
    "geekblog_pg_client_1": "PG client",
    "geekblog_pg_embedded": "PG embedded",
}
ONE_ENGINE = ("geekblog_pg_1", "geekblog_pg_client_1", "geekblog_pg_embedded")
"""GeekBlog on PostgreSQL with one process running jobs: the service (HTTP), a Python client beside a
worker (as the harness runs procrastinate and PgQueuer), and the engine embedded in the driver's process;
the PostgreSQL targets apply to all three."""
ONE_PROCESS = ("geekblog_pg_embedded",)
"""Contenders whose engine runs in the driver's process: their CPU cost is one figure, the driver's."""

# (label, workload, path in the result, better: "high"/"low", target key)
METRICS: list[tuple[str, str, tuple[str, ...], str, str | None]] = [
    (
        "W1 throughput, tasks/s ({throughput} tasks, first submit → last result)",
        "W1_throughput",
        ("tasks_per_s",),
        "high",
        "W1",
    ),
    ("W1 submit-only rate, tasks/s", "W1_throughput", ("submit_per_s",), "high", None),
    ("W2 latency p50, ms", "W2_latency", ("p50_ms",), "low", "W2p50"),
    ("W2 latency p95, ms", "W2_latency", ("p95_ms",), "low", None),
    ("W2 latency p99, ms", "W2_latency", ("p99_ms",), "low", "W2p99"),
    ("W3 chain({chain}), ms/step", "W3_chain", ("ms_per_step",), "low", "W3"),
    ("W4 chord({chord}) total, s", "W4_chord", ("total_s",), "low", "W4"),
    ("W4 chord client submit, s", "W4_chord", ("submit_s",), "low", None),
    ("W5 cold start, s (median of 3)", "W5_coldstart", ("median_s",), "low", "W5"),
    ("W6 peak worker RSS during W1, MB", "W1_throughput", ("memory", "peak_worker_rss_mb"), "low", "W6"),
    ("W6 peak broker / database RSS during W1, MB", "W1_throughput", ("memory", "peak_service_rss_mb"), "low", None),
    ("W6 peak worker + broker RSS during W1, MB", "W1_throughput", ("memory", "peak_total_rss_mb"), "low", None),
    ("W6 backlog of {backlog}: storage, MB", "W6_backlog", ("@storage",), "low", None),
    ("W6 backlog enqueue rate (no worker), tasks/s", "W6_backlog", ("submit_per_s_no_worker",), "high", None),
]

# Targets of the issues (medians), per contender: ("ge"|"le", value); W1 of PostgreSQL is relative (below).
TARGETS: dict[str, dict[str, tuple[str, float]]] = {
    "geekblog_service": {
        "W1": ("ge", 2000),
        "W2p50": ("le", 3),
        "W2p99": ("le", 10),
        "W3": ("le", 2),
        "W4": ("le", 1),
        "W5": ("le", 1.0),
        "W6": ("le", 80),
    },
    "geekblog_embedded": {
        "W1": ("ge", 10000),
        "W2p50": ("le", 0.5),
        "W2p99": ("le", 2),
        "W3": ("le", 0.5),
        "W4": ("le", 0.3),
        "W5": ("le", 0.5),
        "W6": ("le", 60),
    },
    "geekblog_pg_1": {"W2p50": ("le", 5)},
    "geekblog_pg_client_1": {"W2p50": ("le", 5)},
    "geekblog_pg_embedded": {"W2p50": ("le", 5)},
}
PG_W1_FACTOR = 2.0
"""GeekBlog on PostgreSQL with one engine: W1 at least this many times the better of procrastinate and
PgQueuer in the same run."""


class Comparison(NamedTuple):
    """One table: its contenders, the ratio columns (ours, theirs, header) and whose targets it shows."""

    title: str
    contenders: list[str]
    ratios: list[tuple[str, str, str]]
    targets: list[str]


def comparisons(runs: dict[str, list[dict[str, Any]]]) -> list[Comparison]:
    """The tables that the results at hand fill (a table whose GeekBlog contenders did not run is left out)."""
    tables = []
    ours = [o for o in ("geekblog_service", "geekblog_embedded") if o in runs]
    peers = [p for p in ("celery", "huey") if p in runs]
    if ours:
        pairs = [(o, p, f"{SHORT[o]} vs {TITLES[p]}") for o in ours for p in peers]
        tables.append(Comparison("GeekBlog on SQLite vs Celery and Huey", ours + peers, pairs, ours))
    engines = [
        e
        for e in ("geekblog_pg_1", "geekblog_pg_2", "geekblog_pg_3", "geekblog_pg_client_1", "geekblog_pg_embedded")
        if e in runs
    ]
    pg_peers = [p for p in ("procrastinate_pg", "pgqueuer_pg", "dbos_sqlite") if p in runs]
    if engines:
        pairs = [(o, p, f"{SHORT[o]} vs {TITLES[p]}") for o in ONE_ENGINE if o in runs for p in pg_peers]
        pairs += [
            (e, "geekblog_pg_1", f"{e[-1]} engines vs 1")
            for e in engines
            if e in ("geekblog_pg_2", "geekblog_pg_3") and "geekblog_pg_1" in runs
        ]
        title = "GeekBlog on PostgreSQL vs procrastinate, PgQueuer and DBOS"
        tables.append(Comparison(title, engines + pg_peers, pairs, [e for e in engines if e in ONE_ENGINE]))
    return tables


# --- reading ----------------------------------------------------------------------------------------------


def load(out: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    found = [p for p in out.glob("*-run*.json") if not p.name.endswith(".cost.json")]
    for path in sorted(found, key=lambda p: (p.name.split("-run")[0], int(p.stem.split("-run")[1]))):
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue
        cost = path.with_suffix(".cost.json")
        if cost.exists():
            with contextlib.suppress(ValueError):
                document["cost"] = json.loads(cost.read_text())
        runs.setdefault(document["contender"], []).append(document)
    return runs


def unsupported(document: dict[str, Any], workload: str) -> str | None:
    result = document["results"].get(workload)
    return result.get("unsupported") if isinstance(result, dict) else None


def value(document: dict[str, Any], workload: str, path: tuple[str, ...]) -> float | None:
    result = document["results"].get(workload)
    if not isinstance(result, dict) or "error" in result or "unsupported" in result:
        return None
    if path == ("@storage",):
        after = result.get("footprint_after", {})
        for key in ("redis_used_memory", "sqlite_bytes_total", "pg_database_bytes"):
            if key in after:
                return round(after[key] / 2**20, 1)
        return None
    current: Any = result
    for key in path:
        current = current.get(key) if isinstance(current, dict) else None
    return current if isinstance(current, int | float) else None


def median(values: list[float | None]) -> float | None:
    numbers = [v for v in values if v is not None]
    return statistics.median(numbers) if numbers else None


def number(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def cell(values: list[float | None], documents: list[dict[str, Any]], workload: str) -> str:
    if documents and all(unsupported(d, workload) for d in documents):
        return "unsupported"
    med = median(values)
    if med is None:
        return "ERR" if values else "-"
    runs = " / ".join("ERR" if v is None else number(v) for v in values)
    return f"**{number(med)}** ({runs})" if len(values) > 1 else f"**{number(med)}**"


def ratio(ours: float | None, theirs: float | None, better: str) -> str:
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return "-"
    factor = ours / theirs if better == "high" else theirs / ours
    return f"{factor:.2g}x" if factor < 10 else f"{factor:,.0f}x"


def target_text(contender: str, key: str, got: float | None, medians: dict[str, float | None]) -> str | None:
    goal = TARGETS.get(contender, {}).get(key)
    if contender in ONE_ENGINE and key == "W1":
        best = max((m for p in ("procrastinate_pg", "pgqueuer_pg") if (m := medians.get(p)) is not None), default=None)
        if best is None:
            return None
        goal = ("ge", PG_W1_FACTOR * best)
    if goal is None:
        return None
    op, limit = goal
    sign = "≥" if op == "ge" else "≤"
    met = got is not None and (got >= limit if op == "ge" else got <= limit)
    mark = "?" if got is None else "✅" if met else "❌"
    return f"{sign} {number(limit)} {mark}"


def sizes_of(runs: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """The sizes the results were taken with (the smoke's are smaller), for the row labels."""
    found = {"throughput": "?", "chain": "?", "chord": "?", "backlog": "?"}
    for documents in runs.values():
        for document in documents:
            results = document.get("results", {})
            for key, workload, field in (
                ("throughput", "W1_throughput", "n"),
                ("chain", "W3_chain", "steps"),
                ("chord", "W4_chord", "n"),
                ("backlog", "W6_backlog", "n"),
            ):
                size = results.get(workload, {}).get(field)
                if isinstance(size, int) and found[key] == "?":
                    found[key] = f"{size:,}"
    return found


# --- rendering --------------------------------------------------------------------------------------------


def render_table(runs: dict[str, list[dict[str, Any]]], table: Comparison) -> str:
    present = [c for c in table.contenders if c in runs]
    targets = [t for t in table.targets if t in runs]
    head = ["metric"] + [TITLES.get(c, c) for c in present] + [label for _, _, label in table.ratios]
    if targets:
        head.append("target: " + " / ".join(SHORT.get(t, t) for t in targets))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    sizes = sizes_of(runs)
    for template, workload, path, better, target in METRICS:
        values = {c: [value(d, workload, path) for d in runs[c]] for c in present}
        medians = {c: median(v) for c, v in values.items()}
        row = [template.format(**sizes)] + [cell(values[c], runs[c], workload) for c in present]
        row += [ratio(medians.get(o), medians.get(p), better) for o, p, _ in table.ratios]
        if targets:
            texts = [target_text(t, target, medians.get(t), medians) if target else None for t in targets]
            row.append(" / ".join(t or "-" for t in texts) if any(texts) else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def render_tables(runs: dict[str, list[dict[str, Any]]]) -> str:
    parts = []
    for table in comparisons(runs):
        parts.append(f"### {table.title}\n\n{render_table(runs, table)}")
        reasons = sorted(
            {
                f"`{c}` {w}: {why}"
                for c in table.contenders
                for d in runs.get(c, [])
                for w in d["results"]
                if (why := unsupported(d, w)) and not w.startswith("W7")
            }
        )
        if reasons:
            parts.append("Unsupported: " + "; ".join(reasons) + ".\n")
        cost = render_cost(runs, table)
        if cost:
            parts.append(cost)
    return "\n".join(parts)


def render_cost(runs: dict[str, list[dict[str, Any]]], table: Comparison) -> str:
    """What W1 cost each GeekBlog-on-PostgreSQL contender per task (``*.cost.json`` of contender_postgres)."""
    rows: list[str] = []
    one: list[str] = []  # titles of the rows whose engine is the driver's process
    for name in table.contenders:
        costs = [d["cost"] for d in runs.get(name, []) if isinstance(d.get("cost"), dict)]
        if not costs:
            continue
        fields = ("engines_cpu_ms", "postgres_cpu_ms", "driver_cpu_ms", "transactions")
        medians = {f: median([c.get(f) for c in costs]) for f in fields}
        shown = [("-" if medians[f] is None else f"{medians[f]:.2f}") for f in fields]  # type: ignore[str-format]
        if name in ONE_PROCESS:  # the engine's process is the driver's: one figure, in the driver's column
            shown[0] = "in the driver's"
            one.append(TITLES.get(name, name))
        rows.append(f"| {TITLES.get(name, name)} | " + " | ".join(shown) + " |")
    if not rows:
        return ""
    head = (
        "W1's cost per task (medians over the runs; CPU from /proc of the engine processes, of PostgreSQL's "
        "backends for the database and its auxiliary processes, and of the driver; transactions from "
        "`pg_stat_database`, reads included):\n\n"
        "| contender | engines' CPU, ms/task | PostgreSQL CPU, ms/task | driver CPU, ms/task | "
        "PostgreSQL transactions/task |\n|---|---|---|---|---|\n"
    )
    tail = (
        f"\n{', '.join(one)}: the engine runs in the driver's process, so the driver's CPU is the engine's and "
        "the driver's together (the harness's loop, the `.delay()`/`get()` calls and the jobs).\n"
        if one
        else ""
    )
    return head + "\n".join(rows) + "\n" + tail


def storage_notes(runs: dict[str, list[dict[str, Any]]], order: list[str]) -> list[str]:
    """What the SQLite backlog footprints are made of (the WAL can dominate them)."""
    notes = []
    for name in [c for c in order if c in runs]:
        for document in runs[name][:1]:
            after = document["results"].get("W6_backlog", {}).get("footprint_after", {})
            files = after.get("sqlite_files")
            if not files:
                continue
            shown = ", ".join(f"`{f}` {size / 2**20:.1f} MB" for f, size in files.items())
            notes.append(f"W6 backlog storage of `{name}` (run 1): {shown}.")
    return notes


def render_versions(runs: dict[str, list[dict[str, Any]]], order: list[str]) -> str:
    lines = []
    for name in [c for c in order if c in runs]:
        versions = runs[name][0].get("versions", {})
        shown = ", ".join(f"{k} {v}" for k, v in versions.items())
        lines.append(f"* `{name}`: {shown}")
    return "\n".join(lines) + "\n"


def render_machine(info: dict[str, Any]) -> str:
    text = (
        f"* CPU: {info.get('cpu')}, {info.get('ncpu')} CPUs, {info.get('mem_gib', '?')} GiB RAM; "
        f"kernel {info.get('kernel')}; driver Python {info.get('python')}.\n"
    )
    if info.get("other_load"):
        text += (
            "* **Other processes were busy during the run** (they ran through it, so they are not this "
            "benchmark's; CPU time from /proc): "
            + "; ".join(info["other_load"])
            + ". The figures below are disturbed accordingly.\n"
        )
    if "steal_pct" in info:
        text += (
            f"* Over the whole run: CPU busy {info['busy_pct']} %, steal {info['steal_pct']} %, "
            f"iowait {info['iowait_pct']} % (from /proc/stat; it counts every process on the machine, this "
            f"benchmark's and any other's); load average at the end {' '.join(info.get('loadavg_end', []))}. "
            "Everything (driver, workers, redis, PostgreSQL) shares these CPUs; the harness's own notes treat "
            "differences under ~2x as noise on this kind of machine.\n"
        )
    return text


def render_doc(tables: str, versions: str, info: dict[str, Any], meta: dict[str, Any], notes_text: str) -> str:
    smoke = " (SMOKE sizes: not comparable with the targets)" if meta["smoke"] else ""
    failures = meta["failures"]
    problems = "\n".join(f"* {f}" for f in failures) if failures else "* none: every workload of every run completed"
    notes = "".join(f"* {note}\n" for note in meta["notes"])
    notes = f"\nNotes on this run:\n\n{notes}" if notes else ""
    return f"""# Benchmarks: GeekBlog Tasks vs Celery, Huey, procrastinate, PgQueuer and DBOS

Generated by `{meta["command"]}` on {meta["date"]} ({meta["runs"]} run(s), {meta["elapsed"]:.0f} s){smoke}.
Raw results (one JSON per contender and run, and the harness's logs): `{meta["out"]}`.
The harness is `../shared/peers` (read only); the workloads are its W1 to W6.

## Results

Cells: **median** (run 1 / run 2 ...). Ratio columns: how many times better GeekBlog is than the peer
(above 1 = better, below 1 = worse); "2 engines vs 1" is how many times better two engine processes do
than one. Targets are the issues' (medians; W6 is the worker's RSS; GeekBlog PG's W1 target is
{PG_W1_FACTOR:g}x the better of procrastinate and PgQueuer in the same run).

{tables}
Problems seen in this run:

{problems}
{notes}
## Machine

{render_machine(info)}
## Versions

{versions}
{notes_text}"""
