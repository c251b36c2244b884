"""What is not Celery's is not reported: names resolve through the module's imports (issue 16)."""

from __future__ import annotations

from pathlib import Path

from entrypoints.migrate.analyse import analyse


def findings_of(tmp_path: Path, files: dict[str, str]) -> list[tuple[str, int, str, str, str]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    found, _, _ = analyse(tmp_path)
    return [(f.file, f.line, f.kind, f.name, f.status) for f in sorted(found)]


def test_look_alikes_are_not_celery_constructs(tmp_path: Path) -> None:
    source = '''"""chain(add.s(1)) in a docstring."""
import inspect
from itertools import chain

from celery import shared_task


@shared_task
def add(x, y):
    return x + y


def view(request):
    # add.delay(1, 2)
    sig = inspect.signature(view)
    add = lambda x, y: x + y
    add.delay = None
    return list(chain([1], [2])), request.user, sig, add(1, 2)
'''
    assert findings_of(tmp_path, {"app/tasks.py": source}) == [
        ("app/tasks.py", 9, "task", "tasks.add", "supported")  # app/ has no __init__.py
    ]


def test_names_resolve_across_modules_and_aliases(tmp_path: Path) -> None:
    files = {
        "proj/__init__.py": "",
        "proj/worker.py": "import celery as c\n\ncelery_app = c.Celery('proj')\n",
        "proj/jobs.py": (
            "from proj.worker import celery_app as capp\nfrom celery import signature as sig\n\n\n"
            "@capp.task(name='jobs.named', acks_late=False)\ndef named():\n    return 1\n\n\n"
            "def go():\n    capp.send_task('jobs.named')\n    return sig('jobs.named'), named.si()\n"
        ),
    }
    assert findings_of(tmp_path, files) == [
        ("proj/jobs.py", 6, "task", "jobs.named", "unsupported"),
        ("proj/jobs.py", 11, "send_task", "jobs.named", "unsupported"),
        ("proj/jobs.py", 12, "canvas", "named.si", "supported"),
        ("proj/jobs.py", 12, "canvas", "sig", "supported"),
        ("proj/worker.py", 3, "app", "proj", "difference"),
    ]


def test_newer_syntax_is_reported_unparsed_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "new.py").write_text("def f[T](x: T) -> T:  # PEP 695: Python 3.12\n    return x\n")
    found, unparsed, files = analyse(tmp_path)
    assert found == []
    assert [u.file for u in unparsed] == ["new.py"]
    assert files == 1


def test_a_task_is_named_after_its_package_whatever_path_is_given(tmp_path: Path) -> None:
    findings_of(
        tmp_path,
        {
            "site/__init__.py": "",
            "site/jobs.py": "from celery import shared_task\n\n\n@shared_task\ndef go():\n    return 1\n",
        },
    )
    for given in (tmp_path, tmp_path / "site", tmp_path / "site" / "jobs.py"):
        found, _, _ = analyse(given)
        assert [f.name for f in found] == ["site.jobs.go"]


def test_an_app_re_exported_by_its_package_is_still_the_app(tmp_path: Path) -> None:
    files = {
        "proj/__init__.py": "from .celery import app as celery_app\n",
        "proj/celery.py": "from celery import Celery\n\napp = Celery('proj')\n",
        "proj/jobs.py": "from proj import celery_app\n\n\n@celery_app.task\ndef go():\n    return 1\n",
    }
    assert findings_of(tmp_path, files) == [
        ("proj/celery.py", 3, "app", "proj", "difference"),
        ("proj/jobs.py", 5, "task", "proj.jobs.go", "supported"),
    ]
