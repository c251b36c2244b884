"""The contract suites run every test against each adapter: job repositories and project repositories."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory_job_repository import InMemoryJobRepository
from adapters.memory_project_repository import InMemoryProjectRepository
from adapters.sqlite import SqliteJobRepository, SqliteProjectRepository
from application.ports import JobRepository
from application.ports.project_repository import ProjectRepository


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


@pytest.fixture(params=["memory", "sqlite"])
async def projects(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProjectRepository]:
    """An empty project repository; the SQLite one shares an open job repository's file."""
    if request.param == "memory":
        yield InMemoryProjectRepository()
        return
    database = SqliteJobRepository(tmp_path / "tasks.db")
    await database.open()
    try:
        yield SqliteProjectRepository(database)
    finally:
        await database.close()
