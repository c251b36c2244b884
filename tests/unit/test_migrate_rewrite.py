"""geekblog migrate --diff / --apply on the fixture project: the exact rewritten files, idempotent (issue 16)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from entrypoints.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "celery_projects"
REWRITTEN = ("proj/celery.py", "proj/tasks.py", "proj/workflows.py")


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "shop", tmp_path / "shop"))


def tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.py"))}


def test_apply_writes_exactly_the_expected_files_and_nothing_else(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(shop)
    assert main(["migrate", "--apply", str(shop)]) == 1  # unsupported constructs remain, listed
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"rewrote {name}" for name in REWRITTEN]
    after = tree(shop)
    for name in before:
        expected = (FIXTURES / "shop_migrated" / name).read_text() if name in REWRITTEN else before[name]
        assert after[name] == expected, name
    assert "left untouched: proj/workflows.py:20: call fetch.apply_async" in err
    assert "left untouched: proj/tasks.py: from celery.signals import ...: worker_ready not provided here" in err


def test_apply_is_idempotent(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["migrate", "--apply", str(shop)])
    once = tree(shop)
    capsys.readouterr()
    main(["migrate", "--apply", str(shop)])
    assert capsys.readouterr().out == ""
    assert tree(shop) == once


def test_diff_previews_and_writes_nothing(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = tree(shop)
    main(["migrate", "--diff", str(shop)])
    out = capsys.readouterr().out
    assert tree(shop) == before
    assert "--- a/proj/tasks.py\n+++ b/proj/tasks.py\n" in out
    assert '-@shared_task\n+@shared_task(name="proj.tasks.add")\n' in out
    assert '+@create_compatible_task(name="proj.tasks.fetch", bind=True, max_retries=3, default_retry_delay=0)\n' in out


def test_apply_and_diff_together_is_bad_input(shop: Path) -> None:
    assert main(["migrate", "--apply", "--diff", str(shop)]) == 2


def test_a_decorator_with_unsupported_options_is_left_as_it_is(tmp_path: Path) -> None:
    source = "from celery import shared_task\n\n\n@shared_task(exchange='x')\ndef f():\n    return 1\n"
    (tmp_path / "t.py").write_text(source)
    assert main(["migrate", "--apply", str(tmp_path)]) == 1
    assert (tmp_path / "t.py").read_text() == source.replace(
        "from celery import", "from entrypoints.celery_compat import"
    )
