"""Storage faults through the HTTP API: a database locked by another process, and a full disk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from entrypoints.container import Container
from entrypoints.http.app import create_app
from entrypoints.settings import Settings


@contextlib.asynccontextmanager
async def service(db: Path, **settings: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(Container(settings=Settings(db_path=str(db), **settings)))
    async with AsyncTestClient(app) as client:
        yield client


async def settled(client: AsyncTestClient[Litestar], job_id: str, states: set[str], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while (job := (await client.get(f"/jobs/{job_id}")).json())["state"] not in states:
        assert time.monotonic() < deadline, f"job stayed {job['state']}"
        await asyncio.sleep(0.02)
    return job


@contextlib.contextmanager
def write_lock(db: Path) -> Iterator[sqlite3.Connection]:
    """Another connection (as another process would) holding the database's write lock."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield other
    finally:
        other.execute("ROLLBACK")
        other.close()


class TestLockedDatabase:
    async def test_writes_wait_within_the_bound_then_get_a_clear_503_and_nothing_is_half_written(
        self, tmp_path: Path
    ) -> None:
        db = tmp_path / "geekblog.db"
        async with service(db, busy_timeout_ms=300) as client:
            done = (await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2]})).json()
            await settled(client, done["id"], {"SUCCESS"})
            with write_lock(db):
                started = time.monotonic()
                refused = await client.post("/jobs", json={"task": "geekblog.add", "args": [3, 4]})
                waited = time.monotonic() - started
                assert refused.status_code == 503
                assert refused.headers["content-type"] == "application/problem+json"
                assert "locked" in refused.json()["detail"] and refused.headers["retry-after"]
                assert 0.25 <= waited < 5, waited
                assert (await client.get(f"/jobs/{done['id']}")).json()["result"] == 3, "reads still work"
                total = (await client.get("/jobs")).json()["items"]
                assert len(total) == 1, "the refused job was not stored"
            accepted = await client.post("/jobs", json={"task": "geekblog.add", "args": [3, 4]})
            assert accepted.status_code == 202
            assert (await settled(client, accepted.json()["id"], {"SUCCESS"}))["result"] == 7

    async def test_a_job_finishing_while_the_database_is_locked_is_stored_once_it_is_free(self, tmp_path: Path) -> None:
        db = tmp_path / "geekblog.db"
        async with service(db, busy_timeout_ms=100) as client:
            job = (await client.post("/jobs", json={"task": "geekblog.sleep", "args": [0.3, 1]})).json()
            await settled(client, job["id"], {"STARTED"})
            with write_lock(db):
                await asyncio.sleep(0.8)  # the job finishes while the lock is held; its outcome waits
            finished = await settled(client, job["id"], {"SUCCESS", "FAILURE"})
            assert finished["state"] == "SUCCESS" and finished["attempts"] == 1


class TestFullDisk:
    async def test_a_capped_database_refuses_with_503_keeps_its_data_and_recovers_when_space_is_freed(
        self, tmp_path: Path
    ) -> None:
        db = tmp_path / "geekblog.db"
        payload = "x" * 60_000
        async with service(db, max_db_mb=1, result_ttl=0) as client:
            finished = [
                (await client.post("/jobs", json={"task": "geekblog.echo", "args": [payload]})).json()["id"]
                for _ in range(4)
            ]
            for job_id in finished:
                await settled(client, job_id, {"SUCCESS"})
            kept: list[str] = []
            refused = None
            for _ in range(100):
                response = await client.post(
                    "/jobs", json={"task": "geekblog.echo", "args": [payload], "options": {"countdown": 3600}}
                )
                if response.status_code != 202:
                    refused = response
                    break
                kept.append(response.json()["id"])
            assert refused is not None and refused.status_code == 503, "the cap was never reached"
            assert "full" in refused.json()["detail"]
            assert len(kept) >= 2
            for job_id in kept:
                job = (await client.get(f"/jobs/{job_id}")).json()
                assert job["state"] == "PENDING" and job["args"] == [payload], "committed data is intact"
            purged = await asyncio.to_thread(
                subprocess.run,
                [Path(sys.executable).with_name("geekblog"), "purge", "--db", str(db), "--older-than", "0"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert purged.returncode == 0, purged.stderr
            again = await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 1]})
            assert again.status_code == 202, again.text
            assert (await settled(client, again.json()["id"], {"SUCCESS"}))["result"] == 2


@pytest.fixture
def small_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (this needs root, which CI and the dev machines have)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a size-capped tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


class TestFullFilesystem:
    async def test_a_full_filesystem_refuses_with_503_and_recovers_when_space_returns(
        self, small_filesystem: Path
    ) -> None:
        db = small_filesystem / "geekblog.db"
        async with service(db) as client:
            first = (await client.post("/jobs", json={"task": "geekblog.add", "args": [1, 2]})).json()
            await settled(client, first["id"], {"SUCCESS"})
            filler = small_filesystem / "filler"
            with filler.open("wb") as out, contextlib.suppress(OSError):
                while True:
                    out.write(b"\0" * 65536)
                    out.flush()
            refused = None
            for _ in range(50):
                response = await client.post("/jobs", json={"task": "geekblog.echo", "args": ["y" * 50_000]})
                if response.status_code != 202:
                    refused = response
                    break
            assert refused is not None and refused.status_code == 503
            assert "full" in refused.json()["detail"]
            assert (await client.get(f"/jobs/{first['id']}")).json()["result"] == 3, "committed data is intact"
            filler.unlink()
            again = await client.post("/jobs", json={"task": "geekblog.add", "args": [2, 2]})
            assert again.status_code == 202, again.text
            assert (await settled(client, again.json()["id"], {"SUCCESS"}))["result"] == 4
