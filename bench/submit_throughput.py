"""Closed-loop throughput of ``POST /jobs`` (and ``GET /jobs/{id}``) against a real ``geekblog serve`` process.

    python bench/submit_throughput.py [--jobs 5000] [--concurrency 32] [--runs 3] [--workloads submit,get]
                                      [--variants fast,plain]

Each run of each variant starts a fresh ``geekblog serve`` (uvicorn, uvloop, httptools, as ``serve()`` runs
it) on a new SQLite file, then a separate load process keeps ``--concurrency`` keep-alive connections busy,
each sending its next request as soon as the previous answer arrived, until ``--jobs`` requests are done.
The load process writes raw HTTP/1.1 (prebuilt request bytes, a minimal response parser on uvloop) so that
the client costs little of the machine's CPU. Figures: requests per second, the server process's CPU time
per request (user + system, all its threads, from ``/proc``: steadier than throughput on a loaded machine),
and latency percentiles. Runs are interleaved (variant order rotates) and the medians are printed.

Workloads: ``submit`` posts jobs that run at once (the engine executes them meanwhile, in the same
process); ``deferred`` posts jobs with a one-hour countdown (only the submission path is measured);
``get`` reads one existing job. Variants: ``default`` is the service as ``geekblog serve`` runs it; while
``create_app`` has its ``fast_path`` switch, ``fast`` and ``litestar`` are the app with and without it.
Prints Markdown; never fails on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BODIES = {
    "submit": {"task": "geekblog.add", "args": [1, 2]},
    "deferred": {"task": "geekblog.add", "args": [1, 2], "options": {"countdown": 3600}},
}
WARMUP = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


# --- the server process ------------------------------------------------------------------------------------


def serve(variant: str) -> int:
    """``geekblog serve`` with the app of ``variant``: ``default`` as it is, ``fast`` / ``litestar`` with the
    ``/jobs`` fast path in front of Litestar or without it (``create_app``'s ``fast_path``, while it exists)."""
    import entrypoints.http.app as app_module
    from entrypoints.server import serve as run_server
    from entrypoints.settings import Settings

    if variant in ("fast", "litestar"):
        create_app = app_module.create_app

        def with_variant(container: Any = None) -> Any:
            return create_app(container, fast_path=variant == "fast")  # type: ignore[call-arg,unused-ignore]

        app_module.create_app = with_variant  # serve() imports create_app when it is called
    elif variant != "default":
        raise SystemExit(f"unknown variant {variant!r}")
    return run_server(Settings.from_env())


# --- the load process --------------------------------------------------------------------------------------


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def load(port: int, workload: str, requests: int, concurrency: int, target: str) -> dict[str, Any]:
    """``requests`` requests over ``concurrency`` connections, closed loop; returns the figures."""
    host = f"127.0.0.1:{port}".encode()
    if workload == "get":
        request = b"GET " + target.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
        expected = 200
    else:
        body = json.dumps(BODIES[workload]).encode()
        request = (
            b"POST /jobs HTTP/1.1\r\nHost: "
            + host
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        expected = 202
    latencies: list[float] = []
    failures = 0
    remaining = requests

    async def connection() -> None:
        nonlocal remaining, failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                writer.write(request)
                status, _ = await read_response(reader)
                if status == expected:
                    latencies.append(time.perf_counter() - started)
                else:
                    failures += 1
        finally:
            writer.close()

    begin = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - begin
    return {
        "seconds": elapsed,
        "ok": len(latencies),
        "failed": failures,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def run_load(port: int, workload: str, requests: int, concurrency: int, target: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--load",
            str(port),
            "--workload",
            workload,
            "--jobs",
            str(requests),
            "--concurrency",
            str(concurrency),
            "--target",
            target,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# --- the driver --------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_service(variant: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The server of ``variant``; ``NAME@DIR`` runs variant NAME of the code in DIR (another checkout)."""
    import httpx

    variant, _, root = variant.partition("@")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKBLOG_")}
    env.update({"GEEKBLOG_DB_PATH": str(workdir / f"{variant}-{port}.db"), "PYTHONPATH": root or str(ROOT)})
    log = (workdir / "service.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", variant, "--port", str(port)], env=env, stdout=log, stderr=log
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process, port
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit(f"the service did not start; see {workdir / 'service.log'}")


def measure(variant: str, workload: str, requests: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    import httpx

    process, port = start_service(variant, workdir)
    try:
        target = ""
        if workload == "get":
            created = httpx.post(f"http://127.0.0.1:{port}/jobs", json=BODIES["deferred"], timeout=10)
            target = created.headers["location"]
        run_load(port, workload, WARMUP, concurrency, target)
        before = cpu_seconds(process.pid)
        figures = run_load(port, workload, requests, concurrency, target)
        cpu = cpu_seconds(process.pid) - before
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    figures["per_s"] = figures["ok"] / figures["seconds"]
    figures["cpu_us"] = cpu / max(figures["ok"], 1) * 1e6
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="requests per measurement")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workloads", default="submit,deferred,get")
    parser.add_argument("--variants", default="default")
    parser.add_argument("--serve", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--load", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--target", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        os.environ["GEEKBLOG_PORT"] = str(args.port)
        return serve(args.serve)
    if args.load:
        import uvloop

        figures = uvloop.run(load(args.load, args.workload, args.jobs, args.concurrency, args.target))
        print(json.dumps(figures))
        return 0
    variants = args.variants.split(",")
    workloads = args.workloads.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="geekblog-submit-"))
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in range(args.runs):
        for workload in workloads:
            order = variants[run % len(variants) :] + variants[: run % len(variants)]
            for variant in order:
                figures = measure(variant, workload, args.jobs, args.concurrency, workdir)
                results.setdefault((workload, variant), []).append(figures)
                print(
                    f"run {run + 1} {workload:8} {variant:8} {figures['per_s']:8.0f}/s "
                    f"{figures['cpu_us']:6.0f} us CPU/request  p50 {figures['p50_ms']:.2f} ms  "
                    f"p99 {figures['p99_ms']:.2f} ms  failed {figures['failed']}",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"### {args.jobs} requests, {args.concurrency} connections, medians of {args.runs} runs "
        f"(`python bench/submit_throughput.py --jobs {args.jobs} --concurrency {args.concurrency} "
        f"--runs {args.runs} --workloads {args.workloads} --variants {args.variants}`)\n"
    )
    print("| workload | variant | requests/s | runs (requests/s) | server CPU µs/request | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for (workload, variant), rows in results.items():
        rates = [row["per_s"] for row in rows]
        print(
            f"| {workload} | {variant} | {statistics.median(rates):.0f} | {', '.join(f'{r:.0f}' for r in rates)} "
            f"| {statistics.median(row['cpu_us'] for row in rows):.0f} "
            f"| {statistics.median(row['p50_ms'] for row in rows):.2f} "
            f"| {statistics.median(row['p99_ms'] for row in rows):.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
