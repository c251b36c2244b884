"""Load and soak: many jobs through the HTTP API and the Python API, with memory watched and nothing lost.

    python bench/soak.py --http 100000 --python 100000 [--clients 8] [--sigterm-at 0.5] [--keep DIR]

HTTP: a real ``geekblog serve`` process on SQLite; ``--clients`` concurrent HTTP clients submit
``geekblog.add`` jobs; with ``--sigterm-at F`` the service gets SIGTERM after that fraction of the
submissions and is started again (submissions refused meanwhile are retried, so only acknowledged
jobs count). Then every acknowledged job is checked: SUCCESS with the right result.
Python: the engine embedded in this process, jobs submitted with ``.delay()`` in concurrent batches
and awaited. For each: jobs/s, and RSS (from /proc) at start, peak and end. Exits non-zero if a job
is lost or wrong; never on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from entrypoints.celery_compat import create_compatible_task, embedded_engine  # noqa: E402


@create_compatible_task(name="soak.add")
async def add(x: int, y: int) -> int:
    return x + y


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Samples a process's RSS every ``interval`` seconds in a thread: start, peak, end."""

    def __init__(self, pid_of: Any, interval: float = 0.25) -> None:
        self._pid_of = pid_of
        self._interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_mb(self._pid_of()))
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb(self._pid_of()))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            value = rss_mb(self._pid_of())
            if value:
                self.samples.append(value)

    def summary(self) -> str:
        return f"{self.samples[0]:.1f} / {max(self.samples):.1f} / {self.samples[-1]:.1f}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GEEKBLOG_")},
            "PYTHONPATH": str(ROOT),
            "GEEKBLOG_DB_PATH": str(workdir / "soak.db"),
            "GEEKBLOG_SHUTDOWN_GRACE": "5",
        }
        self.log = workdir / "service.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).with_name("geekblog")), "serve", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"the service did not start; see {self.log}")

    def pid(self) -> int:
        return self.process.pid if self.process else 0

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


async def http_soak(total: int, clients: int, sigterm_at: float | None, workdir: Path) -> dict[str, Any]:
    service = Service(workdir)
    service.start()
    acknowledged: dict[str, int] = {}
    next_index = 0
    refused = 0
    restart_lock = asyncio.Lock()
    restarted = asyncio.Event()
    background: set[asyncio.Future[None]] = set()
    sigterm_after = int(total * sigterm_at) if sigterm_at is not None else None

    async def restart() -> None:
        async with restart_lock:
            if restarted.is_set():
                return
            code = await asyncio.to_thread(service.terminate)
            print(f"  SIGTERM after {len(acknowledged):,} acknowledged jobs (exit {code}); restarting", flush=True)
            await asyncio.to_thread(service.start)
            restarted.set()

    async def client() -> None:
        nonlocal next_index, refused
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            while next_index < total:
                index = next_index
                next_index += 1
                if sigterm_after is not None and index == sigterm_after:
                    background.add(asyncio.ensure_future(restart()))
                while True:
                    try:
                        response = await http.post("/jobs", json={"task": "geekblog.add", "args": [index, 1]})
                    except httpx.HTTPError:
                        response = None
                    if response is not None and response.status_code == 202:
                        acknowledged[response.json()["id"]] = index + 1
                        break
                    refused += 1
                    await asyncio.sleep(0.05)

    with RssSampler(service.pid) as rss:
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        submitted = time.perf_counter()
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as http:
            deadline = time.monotonic() + 600
            while True:
                states = {
                    line.split('"')[1]: float(line.split()[-1])
                    for line in (await http.get("/metrics")).text.splitlines()
                    if line.startswith("geekblog_shared_jobs{")
                }
                if states.get("PENDING", 0) + states.get("STARTED", 0) + states.get("RETRY", 0) == 0:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("jobs did not finish within 10 minutes")
                await asyncio.sleep(0.2)
        finished = time.perf_counter()
    lost, wrong = await verify(service.url, acknowledged)
    service.terminate()
    return {
        "jobs": len(acknowledged),
        "refused (retried)": refused,
        "submit rate, jobs/s": round(len(acknowledged) / (submitted - started)),
        "throughput, jobs/s": round(len(acknowledged) / (finished - started)),
        "seconds": round(finished - started, 1),
        "service RSS MB start / peak / end": rss.summary(),
        "lost": lost,
        "wrong": wrong,
    }


async def verify(url: str, acknowledged: dict[str, int]) -> tuple[int, int]:
    """Page through every job once and compare with what was acknowledged."""
    seen: dict[str, Any] = {}
    cursor = None
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while True:
            params: dict[str, Any] = {"limit": 500, "task": "geekblog.add"}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/jobs", params=params)).json()
            for job in page["items"]:
                seen[job["id"]] = job
            cursor = page["next_cursor"]
            if not cursor:
                break
    lost = sum(1 for job_id in acknowledged if job_id not in seen)
    wrong = sum(
        1
        for job_id, expected in acknowledged.items()
        if job_id in seen and (seen[job_id]["state"] != "SUCCESS" or seen[job_id]["result"] != expected)
    )
    return lost, wrong


async def python_soak(total: int, batch: int, workdir: Path) -> dict[str, Any]:
    with RssSampler(os.getpid) as rss:
        async with embedded_engine(db_path=str(workdir / "embedded.db")):
            started = time.perf_counter()
            wrong = 0
            for offset in range(0, total, batch):
                handles = await asyncio.gather(*(add.delay(i, 1) for i in range(offset, min(offset + batch, total))))
                results = await asyncio.gather(*(handle.get(timeout=120) for handle in handles))
                wrong += sum(
                    1 for i, result in zip(range(offset, offset + batch), results, strict=False) if result != i + 1
                )
            finished = time.perf_counter()
    return {
        "jobs": total,
        "throughput, jobs/s": round(total / (finished - started)),
        "seconds": round(finished - started, 1),
        "process RSS MB start / peak / end": rss.summary(),
        "lost": 0,
        "wrong": wrong,
    }


def table(title: str, figures: dict[str, Any]) -> str:
    rows = "\n".join(f"| {name} | {value} |" for name, value in figures.items())
    return f"\n### {title}\n\n| measure | value |\n|---|---|\n{rows}\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--http", type=int, default=10_000, help="jobs through the HTTP API (0 to skip)")
    parser.add_argument("--python", type=int, default=10_000, help="jobs through the Python API (0 to skip)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=500, help="Python API: jobs submitted concurrently per batch")
    parser.add_argument("--sigterm-at", type=float, help="SIGTERM and restart the service after this fraction")
    parser.add_argument("--keep", type=Path, help="keep the databases and logs in this directory")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="geekblog-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak in {workdir}: python {sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    failures = 0
    if args.http:
        figures = asyncio.run(http_soak(args.http, args.clients, args.sigterm_at, workdir))
        print(table(f"HTTP API: {args.http:,} jobs, {args.clients} clients", figures), flush=True)
        failures += figures["lost"] + figures["wrong"]
    if args.python:
        figures = asyncio.run(python_soak(args.python, args.batch, workdir))
        print(table(f"Python API (embedded): {args.python:,} jobs", figures), flush=True)
        failures += figures["lost"] + figures["wrong"]
    print("nothing lost, every result right" if failures == 0 else f"FAILED: {failures} job(s) lost or wrong")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
