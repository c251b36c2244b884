"""``geekblog serve`` refuses a database another service has open, whatever path names it (issue 11, finding 3),
and keeps its files 0600 and the directories it creates 0700 whatever the umask (finding 8)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import GEEKBLOG, Service, service_env, wait_for_state


@pytest.mark.parametrize("how", ["symlink", "dot-dot to a symlink"])
def test_a_second_service_on_another_name_of_the_live_database_is_refused(
    make_service: Callable[..., Service], tmp_path: Path, how: str
) -> None:
    service = make_service()
    if how == "symlink":
        other = tmp_path / "link.db"
        other.symlink_to(service.db_path)
    else:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "link.db").symlink_to(service.db_path)
        other = tmp_path / "sub" / ".." / "sub" / "link.db"
    with service.client() as client:
        job = client.post("/jobs", json={"task": "e2e.add", "args": [1, 2]}).json()
    second = subprocess.run(
        [str(GEEKBLOG), "serve", "--port", "1"],
        env=service_env(other),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 1, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geekblog: "), second.stderr
    assert "in use by another engine" in lines[0] and str(other) in lines[0]
    assert "Traceback" not in second.stderr + second.stdout
    with service.client() as client:
        assert client.get(f"/jobs/{job['id']}").status_code == 200, "the first service still serves"


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_the_services_files_and_directories_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "data" / "geekblog" / "tasks.db"
    service = Service(db_path=db, log_path=tmp_path / "service.log")
    previous = os.umask(umask)  # the service process inherits it
    try:
        service.start()
    finally:
        os.umask(previous)
    try:
        with service.client() as client:
            job = client.post("/jobs", json={"task": "e2e.add", "args": [1, 2]}).json()
            wait_for_state(client, f"/jobs/{job['id']}", {"SUCCESS"})
        files = [db, db.with_name("tasks.db-wal"), db.with_name("tasks.db-shm"), db.with_name("tasks.db.lock")]
        assert {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in files} == {
            path.name: "0o600" for path in files
        }
        for directory in (db.parent, db.parent.parent):
            assert oct(stat.S_IMODE(directory.stat().st_mode)) == "0o700", directory
    finally:
        service.stop()
