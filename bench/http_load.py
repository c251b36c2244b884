"""HTTP submissions under a fixed offered load, from a separate load process; and 20 article pipelines.

    python bench/http_load.py [--rates 100,300,600] [--seconds 10] [--projects 20]

Starts one ``geekblog serve`` on SQLite. For each rate, a separate load process (this script with
``--load``) sends ``POST /jobs`` open-loop at that rate (arrivals on a fixed schedule, not waiting for
answers, so a slow server shows as latency, not as a lower offered rate) and reports the achieved
rate and the p50/p95/p99 of submission latency (request sent → 202 received). Then ``--projects``
article pipelines run at once (offline generator, ``GEEKBLOG_OFFLINE_DELAY`` 0.05 s per model call),
reporting the time until all are FINISHED. Prints Markdown; never fails on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(fraction * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


async def offered_load(url: str, rate: float, seconds: float, connections: int) -> dict[str, Any]:
    """The load process: open-loop arrivals at ``rate``/s for ``seconds``."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(index: int) -> None:
            nonlocal failures
            started = time.perf_counter()
            try:
                response = await client.post("/jobs", json={"task": "geekblog.add", "args": [index, 1]})
                if response.status_code == 202:
                    latencies.append(time.perf_counter() - started)
                    return
            except httpx.HTTPError:
                pass
            failures += 1

        total = int(rate * seconds)
        begin = time.perf_counter()
        pending = []
        for index in range(total):
            delay = begin + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(one(index)))
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - begin
    return {
        "offered/s": rate,
        "achieved/s": round(len(latencies) / elapsed),
        "failed": failures,
        "p50 ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p95 ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99 ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else None,
    }


def start_service(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEEKBLOG_")}
    env.update(
        {"GEEKBLOG_DB_PATH": str(workdir / "load.db"), "GEEKBLOG_OFFLINE_DELAY": "0.05", "PYTHONPATH": str(ROOT)}
    )
    log = (workdir / "service.log").open("ab")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("geekblog")), "serve", "--port", str(port)], env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("the service did not start")


def articles(url: str, count: int) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as client:
        started = time.perf_counter()
        ids = [
            client.post("/projects", json={"topic": f"Topic number {n}", "sections": 5}).json()["id"]
            for n in range(count)
        ]
        for project_id in ids:
            assert client.post(f"/projects/{project_id}/article").status_code == 202
        deadline = time.monotonic() + 600
        waiting = set(ids)
        while waiting and time.monotonic() < deadline:
            for project_id in list(waiting):
                status = client.get(f"/projects/{project_id}").json()["status"]
                if status in ("FINISHED", "FAILED"):
                    waiting.discard(project_id)
                    if status == "FAILED":
                        raise SystemExit(f"project {project_id} FAILED")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        words = sum(len(client.get(f"/projects/{p}/article").text.split()) for p in ids)
    return {
        "projects": count,
        "sections each": 5,
        "seconds": round(elapsed, 2),
        "projects/min": round(count / elapsed * 60, 1),
        "words": words,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="100,300,600")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--projects", type=int, default=20)
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:  # the separate load process
        print(json.dumps(asyncio.run(offered_load(args.load, args.rate, args.seconds, args.connections))))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="geekblog-load-"))
    process, url = start_service(workdir)
    try:
        rows = []
        for rate in [float(r) for r in args.rates.split(",")]:
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--load",
                    url,
                    "--rate",
                    str(rate),
                    "--seconds",
                    str(args.seconds),
                    "--connections",
                    str(args.connections),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append(json.loads(out.stdout))
        print(f"### POST /jobs under a fixed offered load ({args.seconds:g} s each, separate load process)\n")
        print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
        for row in rows:
            print("| " + " | ".join(str(value) for value in row.values()) + " |")
        if args.projects:
            figures = articles(url, args.projects)
            print(
                f"\n### The article pipeline, {args.projects} projects at once (offline generator, 0.05 s per call)\n"
            )
            print("| " + " | ".join(figures) + " |\n|" + "---|" * len(figures))
            print("| " + " | ".join(str(value) for value in figures.values()) + " |")
    finally:
        process.terminate()
        process.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
