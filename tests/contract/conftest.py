"""The contract suite runs every test against each JobRepository adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory_job_repository import InMemoryJobRepository
from adapters.sqlite_job_repository import SqliteJobRepository
from application.ports import JobRepository


@pytest.fixture(params=["memory", "sqlite"])
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobRepository]:
    """An open, empty repository; closed after the test whatever happened."""
    adapter: JobRepository = (
        InMemoryJobRepository() if request.param == "memory" else SqliteJobRepository(tmp_path / "tasks.db")
    )
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()
