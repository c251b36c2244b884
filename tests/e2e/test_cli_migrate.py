"""The real ``geekblog migrate`` process on the fixture Celery project (issue 16)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GEEKBLOG = Path(sys.executable).with_name("geekblog")
SHOP = Path(__file__).parents[1] / "fixtures" / "celery_projects" / "shop"


def test_migrate_analysis_as_json_from_the_real_command() -> None:
    done = subprocess.run([GEEKBLOG, "migrate", "--json", str(SHOP)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert report["summary"]["unsupported"] == 6
    assert {f["name"] for f in report["findings"] if f["kind"] == "task"} == {
        "proj.tasks.fetch",
        "proj.tasks.add",
        "orders.total",
    }
    assert report["unparsed"][0]["file"] == "blog/legacy.py"


def test_migrate_bad_path_exits_two() -> None:
    done = subprocess.run([GEEKBLOG, "migrate", "/nonexistent/x"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a directory or a .py file" in done.stderr
