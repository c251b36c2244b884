"""The child process of the crash-recovery test: runs an embedded engine on a SQLite file or on PostgreSQL.

    python crash_child.py PHASE (--db DB | --database-url URL [--lease-seconds S]) --manifest MANIFEST

Phases:

* ``submit``: submit a few hundred jobs and several nested workflows (and, at the same time, more
  jobs from a plain thread), appending each acknowledged handle to the manifest (one JSON line,
  written and fsynced once the submission returned), then keep running them until killed.
* ``lost``: submit two jobs that hang on their first attempt (one of them opted out of
  ``retry_on_worker_lost``), then keep running until killed.
* ``resume``: run the engine until every id in the manifest is finished, then exit 0.

The tasks live in ``crash_tasks.py`` next to this file; ``CRASH_RUNS_LOG`` and ``CRASH_PHASE``
tell them where to log their runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from entrypoints.celery_compat import chain, chord, embedded_engine, group  # noqa: E402
from entrypoints.container import Container  # noqa: E402
from entrypoints.settings import Settings  # noqa: E402

TASK_MODULES = ["crash_tasks"]
SINGLE_JOBS = 300
THREAD_JOBS = 150
PACE = 0.003


class Manifest:
    """Append-only JSON lines; each line is on disk before the next submission starts."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def ack(self, ident: str, kind: str, params: Any) -> None:
        os.write(self._fd, (json.dumps({"id": ident, "kind": kind, "params": params}) + "\n").encode())
        os.fsync(self._fd)


def workflows() -> dict[int, list[tuple[str, Any, Any]]]:
    """Workflows to submit after the single job of that index: (kind, params, canvas)."""
    import crash_tasks as t

    def chain_of(n: int) -> Any:
        return chain(t.add.s(0, 1, delay=0.05), *[t.add.s(k, delay=0.05) for k in range(2, n + 1)])

    def chord_of(n: int) -> Any:
        return chord([t.add.s(i, i, delay=0.01) for i in range(n)], t.tsum.s())

    def group_of_chains(k: int) -> Any:
        return group(chain(t.add.s(i, 1), t.add_sync.s(10, delay=0.01), t.mul.s(2)) for i in range(k))

    def chain_group_task(a: int, b: int) -> Any:
        return chain(t.add.s(a, b), group(t.add.s(10), t.add_sync.s(20), t.add.s(30)), t.tsum.s())

    def replace_in_chain(n: int) -> Any:
        return chain(t.fanout.s(n), t.tsum.s())

    return {
        20: [("chain", {"n": 20}, chain_of(20))],
        40: [("chord", {"n": 30}, chord_of(30))],
        60: [("group_of_chains", {"k": 5}, group_of_chains(5))],
        80: [("chain_group_task", {"a": 1, "b": 2}, chain_group_task(1, 2))],
        100: [("replace_in_chain", {"n": 6}, replace_in_chain(6))],
        120: [("chain", {"n": 20}, chain_of(20)), ("chord", {"n": 30}, chord_of(30))],
        140: [("group_of_chains", {"k": 4}, group_of_chains(4)), ("replace_in_chain", {"n": 8}, replace_in_chain(8))],
        200: [("chain", {"n": 20}, chain_of(20)), ("chain_group_task", {"a": 5, "b": 7}, chain_group_task(5, 7))],
        250: [("chord", {"n": 30}, chord_of(30))],
    }


def submit_from_a_thread(manifest: Manifest) -> None:
    """A second producer on a plain thread: ``.delay()`` commits on this thread (no loop round trip)."""
    import crash_tasks as t

    for i in range(THREAD_JOBS):
        x, y = 10_000 + i, i
        result = t.add.delay(x, y, delay=0.005 if i % 4 == 0 else 0.0)
        manifest.ack(result.id, "add", [x, y])
        time.sleep(PACE)


async def submit(manifest: Manifest) -> None:
    import crash_tasks as t

    from_thread = asyncio.ensure_future(asyncio.to_thread(submit_from_a_thread, manifest))
    extra = workflows()
    for i in range(SINGLE_JOBS):
        x, y = i, 2 * i
        delay = 0.05 if i % 10 == 0 else 0.005 if i % 3 == 0 else 0.0
        task = t.add_sync if i % 7 == 0 else t.add
        result = await task.delay(x, y, delay=delay)
        manifest.ack(result.id, "add", [x, y])
        if i == 150:
            handle = await t.fanout.delay(10)
            manifest.ack(handle.id, "fanout", {"n": 10})
        for kind, params, canvas in extra.get(i, []):
            handle = await canvas.apply_async()
            manifest.ack(handle.id, kind, params)
        await asyncio.sleep(PACE)  # a steady producer: the run takes a couple of seconds
    await from_thread


async def submit_lost(manifest: Manifest) -> None:
    import crash_tasks as t

    result = await t.block.delay()
    manifest.ack(result.id, "block", None)
    result = await t.block_no_retry.delay()
    manifest.ack(result.id, "block_no_retry", None)


def acknowledged(manifest_path: str) -> list[str]:
    with open(manifest_path, encoding="utf-8") as lines:
        return [json.loads(line)["id"] for line in lines if line.endswith("\n")]


def container(args: argparse.Namespace) -> Container:
    """The engine's parts, on the database the test named (on PostgreSQL with its short lease: this
    engine recovers the jobs of the one killed before only once their leases expire)."""
    if args.database_url:
        settings = Settings(
            persistence="postgres",
            database_url=args.database_url,
            lease_seconds=args.lease_seconds,
            max_concurrent_tasks=10,
        )
    else:
        settings = Settings(persistence="sqlite", db_path=args.db, max_concurrent_tasks=10)
    return Container(settings=settings)


async def resume(args: argparse.Namespace, deadline: float) -> None:
    ids = acknowledged(args.manifest)
    async with embedded_engine(task_modules=TASK_MODULES, container=container(args)) as engine:
        for ident in ids:
            await engine.jobs.wait(ident, timeout=max(deadline - time.monotonic(), 0.01))
    print(f"resume: {len(ids)} handles finished", flush=True)


async def main(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    if args.phase == "resume":
        await resume(args, deadline)
        return
    manifest = Manifest(args.manifest)
    async with embedded_engine(task_modules=TASK_MODULES, container=container(args)):
        await (submit(manifest) if args.phase == "submit" else submit_lost(manifest))
        print(f"{args.phase}: everything submitted", flush=True)
        # Keep running the work until the test kills this process (or give up after the timeout).
        await asyncio.sleep(max(deadline - time.monotonic(), 0))
    sys.exit(3)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phase", choices=["submit", "lost", "resume"])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help="a SQLite file")
    where.add_argument("--database-url", help="a PostgreSQL database")
    parser.add_argument("--lease-seconds", type=float, default=60.0)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    asyncio.run(main(parser.parse_args()))
