"""``geekblog serve`` refuses a database another service has open, whatever path names it (issue 11, finding 3)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import GEEKBLOG, Service, service_env


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
