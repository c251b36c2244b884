"""An embedded engine per test, over each repository: memory, SQLite on a fresh file, and PostgreSQL on the
run's database (``postgres_url``), emptied first.

``storage`` says which; ``db_path`` (memory and SQLite only) is for the tests that read the SQLite file
itself or build an HTTP app on it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pytest

from application.engine import Engine
from entrypoints.celery_compat import embedded_engine
from entrypoints.container import Container
from entrypoints.settings import Settings
from tests.integration import compat_tasks
from tests.support.postgres import empty_tables

STORAGES = ["memory", "sqlite", "postgres"]


class Storage(NamedTuple):
    """Where a test's engine keeps its jobs."""

    kind: Literal["memory", "sqlite", "postgres"]
    db_path: str | None = None
    database_url: str | None = None

    def engine_options(self) -> dict[str, Any]:
        """The ``embedded_engine`` arguments that select this storage."""
        return {"db_path": self.db_path, "database_url": self.database_url}

    def container(self, **settings: Any) -> Container:
        """A container on this storage, with these other settings."""
        return Container(
            settings=Settings(
                persistence=self.kind, db_path=self.db_path or "", database_url=self.database_url, **settings
            )
        )


async def new_storage(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """A fresh ``kind`` storage for the test ``request`` runs: a new SQLite file, the run's PostgreSQL
    database emptied."""
    if kind == "memory":
        return Storage("memory")
    if kind == "sqlite":
        return Storage("sqlite", db_path=str(tmp_path / "engine.db"))
    assert kind == "postgres", kind
    url: str = request.getfixturevalue("postgres_url")
    await empty_tables(url)
    return Storage("postgres", database_url=url)


@pytest.fixture(params=STORAGES)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    return await new_storage(request.param, request, tmp_path)


@pytest.fixture(params=["memory", "sqlite"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return None if request.param == "memory" else str(tmp_path / "engine.db")


@pytest.fixture
async def engine(storage: Storage) -> AsyncIterator[Engine]:
    compat_tasks.CALLS.clear()
    compat_tasks.RELEASE.clear()
    async with embedded_engine(task_modules=["tests.integration.compat_tasks"], **storage.engine_options()) as running:
        yield running
    compat_tasks.RELEASE.set()
