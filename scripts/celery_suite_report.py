"""How many of Celery's own integration-suite items pass here: `python scripts/celery_suite_report.py`.

Runs tests/celery_suite (Celery's test_canvas.py and test_tasks.py, ported) once, and counts each
Celery item (a test function and its own parametrisation, as Celery counts them) as passing only
when it passes on every repository it ran on (memory and SQLite). Skipped items are listed with the
README row their reason names; any other item is listed as failing. Extra arguments go to pytest.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

BACKENDS = ("memory", "sqlite")


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        command = [sys.executable, "-m", "pytest", "tests/celery_suite", "-q", f"--junitxml={report}", *argv]
        subprocess.run(command, check=False, stdout=subprocess.DEVNULL)
        outcomes = _outcomes(ElementTree.parse(report))
    for module in ("test_canvas", "test_tasks"):
        items = {key: value for key, value in outcomes.items() if key[0] == module}
        passing = [key for key, value in items.items() if set(value.values()) == {"passed"}]
        skipped = collections.Counter(
            next(iter(value.values()))[len("skipped: ") :]
            for value in items.values()
            if all(status.startswith("skipped") for status in value.values())
        )
        print(f"{module}: {len(passing)} of {len(items)} Celery items pass on {' and '.join(BACKENDS)}")
        for reason, count in skipped.most_common():
            print(f"  skipped {count:3d}  {reason}")
        for key, value in sorted(items.items()):
            if key not in passing and not all(status.startswith("skipped") for status in value.values()):
                print(f"  not passing: {key[1]}{f'[{key[2]}]' if key[2] else ''} {dict(value)}")
    return 0


def _outcomes(tree: ElementTree.ElementTree) -> dict[tuple[str, str, str], dict[str, str]]:
    """``(module, test, Celery's own parameters) -> {backend: passed | failed | skipped: reason}``;
    an expected failure that passed (xpass) counts as passed, one that failed (xfail) as failed."""
    found: dict[tuple[str, str, str], dict[str, str]] = collections.defaultdict(dict)
    for case in tree.iter("testcase"):
        module = case.get("classname", "").split(".")[2] if case.get("classname", "").count(".") >= 2 else ""
        match = re.fullmatch(r"(.*?)\[(.*)\]", case.get("name", ""))
        if match is None:
            continue
        name, params = match.groups()
        parts = params.split("-")
        backend = next((part for part in parts if part in BACKENDS), "?")
        own = "-".join(part for part in parts if part not in BACKENDS)
        test = ".".join([*case.get("classname", "").split(".")[3:], name])
        status = "passed"
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            status = "failed"
        elif skipped is not None:
            reason = skipped.get("message", "")
            status = "failed" if skipped.get("type") == "pytest.xfail" else f"skipped: {reason}"
        found[(module, test, own)][backend] = status
    return found


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
