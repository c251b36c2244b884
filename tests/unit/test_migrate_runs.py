"""The bakery fixture, rewritten by geekblog migrate --apply, runs on the engine with Celery's results (issue 16)."""

from __future__ import annotations

import asyncio
import importlib
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoints.celery_compat import current_app, embedded_engine
from entrypoints.cli import main
from entrypoints.compat.app import Conf

FIXTURES = Path(__file__).parents[1] / "fixtures" / "celery_projects"


@pytest.fixture
def migrated_bakery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Path]:
    root = Path(shutil.copytree(FIXTURES / "bakery", tmp_path / "bakery"))
    assert main(["migrate", str(root)]) == 0  # nothing unsupported
    assert main(["migrate", "--apply", str(root)]) == 0
    capsys.readouterr()
    for path in root.rglob("*.py"):  # Celery itself is not installed: nothing may import it any more
        assert not re.search(r"^(from celery[ .]|import celery)", path.read_text(), re.MULTILINE), path
    saved_conf = current_app.conf
    current_app.conf = Conf()
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == "bakery" or m.startswith("bakery.")]:
            del sys.modules[name]
        current_app.conf = saved_conf


async def test_rewritten_tasks_give_celerys_results(migrated_bakery: Path) -> None:
    async with embedded_engine(task_modules=["bakery.tasks"]):
        tasks: Any = importlib.import_module("bakery.tasks")
        flows: Any = importlib.import_module("bakery.flows")
        assert (tasks.flaky.name, tasks.add.name, tasks.total.name) == (
            "bakery.tasks.flaky",
            "bakery.tasks.add",
            "bakery.total",
        )
        assert await (await tasks.flaky.delay(4)).get(timeout=10) == 42  # two retries, then 4 * 10 + 2
        assert await (await tasks.add.delay(2, 3)).get(timeout=10) == 5
        assert await (await flows.pipeline().apply_async()).get(timeout=10) == 29  # 3, 13, [14, 15], 29
        assert await (await flows.fan_in().apply_async()).get(timeout=10) == 12  # 0 + 2 + 4 + 6
        assert current_app.conf.timezone == "Europe/Paris"
        assert list(current_app.conf.beat_schedule) == ["nightly-total"]


async def test_the_rewritten_eager_test_module_passes(migrated_bakery: Path) -> None:
    sys.path.insert(0, str(migrated_bakery / "tests"))
    try:
        module: Any = importlib.import_module("test_orders")
        await asyncio.to_thread(module.test_in_eager_mode)  # eager runs block: not on the loop's thread
        assert current_app.conf.task_always_eager is True
    finally:
        sys.path.remove(str(migrated_bakery / "tests"))
        sys.modules.pop("test_orders", None)
