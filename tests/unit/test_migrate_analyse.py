"""geekblog migrate's analysis on a fixture project laid out as a real Celery one (issue 16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoints.cli import main
from entrypoints.migrate.analyse import analyse

SHOP = Path(__file__).parents[1] / "fixtures" / "celery_projects" / "shop"

EXPECTED = [
    ("proj/celery.py", 5, "app", "proj", "difference"),
    ("proj/celery.py", 6, "setting", "config_from_object", "unsupported"),
    ("proj/celery.py", 7, "serializer", "task_serializer", "difference"),
    ("proj/celery.py", 7, "setting", "timezone", "supported"),
    ("proj/celery.py", 8, "routing", "task_routes", "unsupported"),
    ("proj/celery.py", 10, "beat", "nightly-total", "supported"),
    ("proj/celery.py", 11, "beat", "ping", "difference"),
    ("proj/settings.py", 5, "setting", "CELERY_BROKER_URL", "difference"),
    ("proj/settings.py", 6, "serializer", "CELERY_TASK_SERIALIZER", "unsupported"),
    ("proj/settings.py", 8, "beat", "weekly-total", "supported"),
    ("proj/settings.py", 9, "beat", "sunrise", "unsupported"),
    ("proj/tasks.py", 9, "task", "proj.tasks.fetch", "supported"),
    ("proj/tasks.py", 10, "bound", "self.request.retries", "supported"),
    ("proj/tasks.py", 11, "bound", "self.retry", "supported"),
    ("proj/tasks.py", 12, "bound", "self.update_state", "supported"),
    ("proj/tasks.py", 13, "bound", "self.request.retries", "supported"),
    ("proj/tasks.py", 17, "task", "proj.tasks.add", "supported"),
    ("proj/tasks.py", 22, "task", "orders.total", "supported"),
    ("proj/tasks.py", 26, "signal", "task_success", "supported"),
    ("proj/tasks.py", 31, "signal", "worker_ready", "unsupported"),
    ("proj/workflows.py", 12, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 12, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 12, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 12, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 12, "canvas", "chain", "supported"),
    ("proj/workflows.py", 12, "canvas", "group", "difference"),
    ("proj/workflows.py", 12, "canvas", "total.s", "supported"),
    ("proj/workflows.py", 13, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 13, "canvas", "chord", "difference"),
    ("proj/workflows.py", 13, "canvas", "total.s", "supported"),
    ("proj/workflows.py", 14, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 14, "canvas", "add.s", "supported"),
    ("proj/workflows.py", 14, "canvas", "|", "supported"),
    ("proj/workflows.py", 19, "call", "add.delay", "supported"),
    ("proj/workflows.py", 20, "call", "fetch.apply_async", "unsupported"),
    ("proj/workflows.py", 21, "result", "get", "supported"),
    ("proj/workflows.py", 21, "result", "state", "difference"),
    ("proj/workflows.py", 22, "result", "AsyncResult", "difference"),
    ("tests/test_tasks.py", 5, "eager", "task_always_eager", "supported"),
    ("tests/test_tasks.py", 9, "call", "add.delay", "supported"),
    ("tests/test_tasks.py", 9, "result", "get", "supported"),
    ("tests/test_tasks.py", 10, "eager", "add.apply", "supported"),
    ("tests/test_tasks.py", 10, "result", "get", "supported"),
]


def test_the_shop_fixture_gives_exactly_these_findings() -> None:
    findings, unparsed, files = analyse(SHOP)
    assert [(f.file, f.line, f.kind, f.name, f.status) for f in sorted(findings)] == EXPECTED
    assert [(u.file, u.reason.split(":")[0]) for u in unparsed] == [
        ("blog/legacy.py", "cannot be parsed by this Python")
    ]
    assert files == 8  # migrations/ and the virtualenv are skipped


def test_details_say_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    findings, _, _ = analyse(SHOP)
    by_name = {f.name: f for f in findings}
    assert "exchange" in by_name["fetch.apply_async"].detail
    assert "solar" in by_name["sunrise"].detail
    assert "pickle" in by_name["CELERY_TASK_SERIALIZER"].detail


def test_json_report_and_exit_code_one_when_something_is_unsupported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--json", str(SHOP)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert set(report) == {"findings", "summary", "unparsed"}
    assert set(report["findings"][0]) == {"file", "line", "kind", "name", "status", "detail"}
    assert report["summary"] == {
        "files": 8,
        "supported": 29,
        "difference": 8,
        "unsupported": 6,
        "unparsed": 1,
        "verdict": "not ready: 6 unsupported construct(s) to change first",
    }


def test_human_table_ends_with_counts_and_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(SHOP)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["LOCATION", "KIND", "NAME", "STATUS", "DETAIL"]
    assert out[1].startswith("proj/celery.py:5 ")
    assert out[-2] == "8 file(s): 29 supported, 8 difference(s), 6 unsupported, 1 unparsed"
    assert out[-1] == "verdict: not ready: 6 unsupported construct(s) to change first"


def test_exit_code_zero_when_nothing_is_unsupported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tasks.py").write_text(
        "from celery import shared_task\n\n\n@shared_task\ndef add(x, y):\n    return x + y\n"
    )
    assert main(["migrate", "--json", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(f["kind"], f["name"], f["status"]) for f in report["findings"]] == [("task", "tasks.add", "supported")]
    assert report["summary"]["verdict"] == "ready"


def test_exit_code_two_on_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", str(tmp_path / "missing")]) == 2
    (tmp_path / "notes.txt").write_text("x")
    assert main(["migrate", str(tmp_path / "notes.txt")]) == 2
    assert "not a directory or a .py file" in capsys.readouterr().err
