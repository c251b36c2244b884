"""``geekblog backup`` never writes over the database's own files, and a failed backup leaves nothing behind
(issue 11, finding 7); a backup is 0600 whatever the umask (finding 8). Run as the real executable beside a
real service."""

from __future__ import annotations

import os
import resource
import sqlite3
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import GEEKBLOG, ROOT, Service, wait_for_state


def run_backup(
    *args: str, env: dict[str, str], preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GEEKBLOG), "backup", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=preexec_fn,
    )


def one_error_line(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("geekblog: "), result.stderr
    return lines[0]


def leftovers(*directories: Path) -> list[Path]:
    return sorted(path for directory in directories for path in directory.iterdir() if ".partial" in path.name)


def fill(service: Service, count: int) -> list[str]:
    with service.client() as client:
        ids = [client.post("/jobs", json={"task": "e2e.add", "args": [i, i]}).json()["id"] for i in range(count)]
        for job_id in ids:
            wait_for_state(client, f"/jobs/{job_id}", {"SUCCESS"})
    return ids


class TestTheDatabasesOwnFilesAreRefused:
    def test_the_database_its_wal_shm_and_lock_are_refused_by_any_name_even_with_force(
        self, make_service: Callable[..., Service], tmp_path: Path
    ) -> None:
        service = make_service()
        ids = fill(service, 10)
        db = service.db_path
        own = {suffix: Path(f"{db}{suffix}") for suffix in ("", "-wal", "-shm", ".lock")}
        assert all(path.exists() for path in own.values()), sorted(p.name for p in tmp_path.iterdir())
        (tmp_path / "sub").mkdir()
        (tmp_path / "wal-link").symlink_to(own["-wal"])
        os.link(own["-wal"], tmp_path / "wal-hard-link")
        targets = [
            *own.values(),
            tmp_path / "sub" / ".." / f"{db.name}-wal",
            tmp_path / "wal-link",
            tmp_path / "wal-hard-link",
            Path(os.path.relpath(own["-shm"], ROOT)),
        ]
        before = {path: path.stat().st_ino for path in own.values()}
        for target in targets:
            for force in ((), ("--force",)):
                refused = run_backup(str(target), *force, "--db", str(db), env=service.env)
                line = one_error_line(refused, 2)
                assert "is the database" in line and "another file" in line, line
        assert {path: path.stat().st_ino for path in own.values()} == before, "no file of the database replaced"
        assert leftovers(tmp_path) == []
        with service.client() as client:
            assert all(client.get(f"/jobs/{job_id}").json()["state"] == "SUCCESS" for job_id in ids)
        service.restart()
        with service.client() as client:
            assert all(client.get(f"/jobs/{job_id}").json()["result"] == 2 * i for i, job_id in enumerate(ids))

    def test_a_database_named_through_a_symlink_has_its_real_files_refused(
        self, make_service: Callable[..., Service], tmp_path: Path
    ) -> None:
        service = make_service()
        fill(service, 1)
        link = tmp_path / "link.db"
        link.symlink_to(service.db_path)
        refused = run_backup(f"{service.db_path}-wal", "--force", "--db", str(link), env=service.env)
        assert "is the database" in one_error_line(refused, 2)


class TestAFailedBackupLeavesNothingBehind:
    def test_a_directory_is_refused_and_nothing_is_written(
        self, make_service: Callable[..., Service], tmp_path: Path
    ) -> None:
        service = make_service()
        fill(service, 1)
        directory = tmp_path / "backups"
        directory.mkdir()
        refused = run_backup(str(directory), "--force", "--db", str(service.db_path), env=service.env)
        assert "is a directory" in one_error_line(refused, 2)
        assert leftovers(tmp_path, directory) == [] and list(directory.iterdir()) == []

    def test_a_backup_failing_halfway_leaves_no_partial_file_and_the_old_backup_intact(
        self, make_service: Callable[..., Service], tmp_path: Path
    ) -> None:
        service = make_service()
        fill(service, 1)
        with service.client() as client:  # enough data that the copy cannot fit in the file-size limit
            for _ in range(20):
                client.post("/jobs", json={"task": "e2e.add", "args": ["x" * 20_000, "y"]})
        backups = tmp_path / "backups"
        backups.mkdir()
        target = backups / "copy.db"
        target.write_bytes(b"the previous backup")

        def small_files() -> None:  # writes past 64 KiB fail with EFBIG (Python ignores SIGXFSZ)
            resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

        failed = run_backup(
            str(target), "--force", "--db", str(service.db_path), env=service.env, preexec_fn=small_files
        )
        assert "failed" in one_error_line(failed, 3)
        assert sorted(path.name for path in backups.iterdir()) == ["copy.db"], "no partial file or journal left"
        assert target.read_bytes() == b"the previous backup"
        assert leftovers(tmp_path) == []

    @pytest.mark.parametrize("where", ["/proc", "/sys", "missing-directory", "a-file"])
    def test_an_unwritable_place_fails_with_one_line_and_leaves_nothing(
        self, make_service: Callable[..., Service], tmp_path: Path, where: str
    ) -> None:
        service = make_service()
        fill(service, 1)
        if where == "a-file":
            (tmp_path / "a-file").write_text("x")
        parent = Path(where) if where.startswith("/") else tmp_path / where
        target = parent / "geekblog-backup.db"
        failed = run_backup(str(target), "--force", "--db", str(service.db_path), env=service.env)
        line = one_error_line(failed, 3 if where.startswith("/") else 2)
        assert str(parent) in line, line
        assert not target.exists() and leftovers(tmp_path) == []
        if parent.is_dir():
            assert not [path for path in parent.iterdir() if "geekblog-backup" in path.name]

    def test_a_good_backup_still_works_and_opens(self, make_service: Callable[..., Service], tmp_path: Path) -> None:
        service = make_service()
        fill(service, 3)
        target = tmp_path / "copy.db"
        done = run_backup(str(target), "--db", str(service.db_path), env=service.env)
        assert done.returncode == 0, done.stderr
        assert "3 jobs" in done.stdout
        assert leftovers(tmp_path) == []
        connection = sqlite3.connect(target)
        try:
            assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (3,)
        finally:
            connection.close()


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277], ids=["umask-022", "umask-000", "umask-277"])
def test_a_backup_is_private_whatever_the_umask(
    make_service: Callable[..., Service], tmp_path: Path, umask: int
) -> None:
    service = make_service()
    fill(service, 1)
    fresh, replaced = tmp_path / "fresh.db", tmp_path / "replaced.db"
    replaced.write_bytes(b"an older backup")
    os.chmod(replaced, 0o644)

    def set_umask() -> None:
        os.umask(umask)

    for target, force in ((fresh, ()), (replaced, ("--force",))):
        done = run_backup(
            str(target),
            *force,
            "--db",
            str(service.db_path),
            env=service.env,
            preexec_fn=set_umask,
        )
        assert done.returncode == 0, done.stderr
        assert oct(stat.S_IMODE(target.stat().st_mode)) == "0o600", target
