"""CPU time of the HTTP layer alone for ``POST /jobs`` and ``GET /jobs/{id}``, in one process, engine stubbed.

    python bench/http_layer_cpu.py [--variants fast,litestar] [--requests 3000] [--rounds 7]

The app is ``create_app`` on the in-memory repository, its job service overridden in the container by a
stub that returns one fixed job at once, so what is measured is the HTTP layer: Litestar, the middleware,
the handler, encoding. Each request is one ASGI call with its whole body in one message (no server, no
socket). Prints the median and best of ``--rounds`` rounds, in CPU microseconds per request (process
time: steadier than wall time on a shared machine). Variants: ``fast`` / ``litestar`` are
``create_app(fast_path=True / False)``; run it with ``PYTHONPATH`` set to another checkout to measure
that one (a checkout whose ``create_app`` has no ``fast_path`` switch is measured as it is, as
``default``). Never fails on a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dependency_injector import providers
from litestar import Litestar

from domain.canvas import Signature
from domain.job import Job
from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings

JOB = Job(id="0f8e1c2a-1111-2222-3333-444455556666", task="geekblog.add", args=[1, 2], due_at=1.7e9, created_at=1.7e9)
SUBMISSION = json.dumps({"task": "geekblog.add", "args": [1, 2]}).encode()


def request(app: Litestar, method: str, path: str, body: bytes = b"") -> Callable[[], Awaitable[None]]:
    """One ASGI call of ``app``, as uvicorn would make it for this request."""
    headers = [(b"host", b"127.0.0.1:8000")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
    }
    message = {"type": "http.request", "body": body, "more_body": False}
    sent: list[int] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: Any) -> None:
        if event["type"] == "http.response.start":
            sent.append(event["status"])

    async def call() -> None:
        await app({**scope, "state": {}}, receive, send)  # type: ignore[arg-type]
        status = sent.pop()
        if status not in (200, 202):
            raise SystemExit(f"{method} {path} answered {status}")

    return call


async def measure(variant: str, requests: int, rounds: int) -> dict[str, list[float]]:
    container = Container(settings=Settings(persistence="memory"))
    real = container.job_service()

    class Stub:
        """The real job service (started and stopped by the engine), but submit and get answer at once."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        async def submit(self, signature: Signature, **options: Any) -> Job:
            return JOB

        async def get(self, job_id: str) -> Job:
            return JOB

    container.job_service.override(providers.Object(Stub()))
    try:
        app = create_app(container, fast_path=variant == "fast")
    except TypeError:  # a checkout without the switch
        app = create_app(container)
    calls = {
        "POST /jobs": request(app, "POST", "/jobs", SUBMISSION),
        "GET /jobs/{id}": request(app, "GET", f"/jobs/{JOB.id}"),
    }
    figures: dict[str, list[float]] = {}
    for name, call in calls.items():
        for _ in range(300):
            await call()
        for _ in range(rounds):
            started = time.process_time()
            for _ in range(requests):
                await call()
            figures.setdefault(name, []).append((time.process_time() - started) / requests * 1e6)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="fast,litestar")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print("| variant | route | CPU µs/request (median) | best |\n|---|---|---|---|")
    for variant in args.variants.split(","):
        figures = asyncio.run(measure(variant, args.requests, args.rounds))
        for route, values in figures.items():
            print(f"| {variant} | {route} | {statistics.median(values):.1f} | {min(values):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
