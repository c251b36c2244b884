"""An embedded engine per test, over each repository: memory and SQLite on a fresh file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from application.engine import Engine
from entrypoints.celery_compat import embedded_engine
from tests.integration import compat_tasks


@pytest.fixture(params=["memory", "sqlite"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return None if request.param == "memory" else str(tmp_path / "engine.db")


@pytest.fixture
async def engine(db_path: str | None) -> AsyncIterator[Engine]:
    compat_tasks.CALLS.clear()
    compat_tasks.RELEASE.clear()
    async with embedded_engine(db_path=db_path, task_modules=["tests.integration.compat_tasks"]) as running:
        yield running
    compat_tasks.RELEASE.set()
