"""The contract suites run every test against each adapter: job repositories and project repositories, in
memory, on SQLite and on PostgreSQL (one database for the run, emptied before each test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.memory_job_repository import InMemoryJobRepository
from adapters.memory_project_repository import InMemoryProjectRepository
from adapters.postgres import PostgresJobRepository, PostgresProjectRepository
from adapters.sqlite import SqliteJobRepository, SqliteProjectRepository
from application.ports import JobRepository
from application.ports.project_repository import ProjectRepository
from entrypoints.compat.threads import BlockingAccess
from tests.support.postgres import empty_tables
from tests.support.storage import blocking_access

REPOSITORIES = ["memory", "sqlite", "postgres"]


async def _new_repository(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> JobRepository:
    if kind == "memory":
        return InMemoryJobRepository()
    if kind == "sqlite":
        return SqliteJobRepository(tmp_path / "tasks.db")
    url: str = request.getfixturevalue("postgres_url")
    await empty_tables(url)
    return PostgresJobRepository(url)


@pytest.fixture(params=REPOSITORIES)
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobRepository]:
    """An open, empty repository; closed after the test whatever happened."""
    adapter = await _new_repository(request.param, request, tmp_path)
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture(params=REPOSITORIES)
async def blocking_repo(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobRepository]:
    """An open, empty repository that also offers blocking reads to plain threads (see ``access``)."""
    adapter = await _new_repository(request.param, request, tmp_path)
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
def access(blocking_repo: JobRepository) -> BlockingAccess:
    """``blocking_repo``'s blocking reads (``entrypoints.compat.threads.BlockingAccess``), as the container
    wires them: the memory and SQLite repositories themselves, PostgreSQL's reader on a loop of its own."""
    return blocking_access(blocking_repo)


@pytest.fixture(params=REPOSITORIES)
async def projects(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProjectRepository]:
    """An empty project repository; the SQLite and PostgreSQL ones share an open job repository's database."""
    if request.param == "memory":
        yield InMemoryProjectRepository()
        return
    database = await _new_repository(request.param, request, tmp_path)
    await database.open()
    try:
        if isinstance(database, SqliteJobRepository):
            yield SqliteProjectRepository(database)
        else:
            assert isinstance(database, PostgresJobRepository)
            yield PostgresProjectRepository(database)
    finally:
        await database.close()
