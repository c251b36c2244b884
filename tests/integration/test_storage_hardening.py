"""The database file's hardening: one engine per file whatever path names it (issue 11, finding 3), and
files 0600 / directories 0700 whatever the umask (finding 8)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.sqlite import SqliteJobRepository, StorageLocked
from application.ports import Commit
from domain.job import Job

ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def opened(path: str | Path) -> AsyncIterator[SqliteJobRepository]:
    repo = SqliteJobRepository(path)
    await repo.open()
    try:
        yield repo
    finally:
        await repo.close()


def resolved(path: Path) -> Path:
    return path.resolve()


def any_exist(*paths: Path) -> bool:
    return any(path.exists() for path in paths)


@pytest.fixture
def live_db(tmp_path: Path) -> Path:
    return tmp_path / "data" / "live.db"


def other_names(live_db: Path, tmp_path: Path) -> dict[str, Path]:
    """Other paths to the same file: a symlink to it, a symlinked directory, and a path through ``..``."""
    link = tmp_path / "link.db"
    link.symlink_to(live_db)
    linked_dir = tmp_path / "linked-dir"
    linked_dir.symlink_to(live_db.parent, target_is_directory=True)
    (tmp_path / "elsewhere").mkdir()
    return {
        "symlink": link,
        "symlinked directory": linked_dir / live_db.name,
        "dot-dot": tmp_path / "elsewhere" / ".." / "data" / live_db.name,
        "dot-dot through a symlinked directory": linked_dir / ".." / "data" / live_db.name,
    }


class TestOneEngineWhateverThePath:
    async def test_every_other_name_of_the_open_database_is_refused(self, live_db: Path, tmp_path: Path) -> None:
        async with opened(live_db) as first:
            for how, path in other_names(live_db, tmp_path).items():
                with pytest.raises(StorageLocked) as caught:
                    await SqliteJobRepository(path).open()
                message = str(caught.value)
                assert "in use by another engine" in message, how
                assert str(path) in message and "\n" not in message, how
            await first.commit(Commit(jobs=[Job(id="still-works", task="tasks.add", due_at=0.0, created_at=0.0)]))
            assert await first.get("still-works") is not None

    async def test_the_lock_file_is_beside_the_real_file_and_a_symlink_opens_it_once_free(
        self, live_db: Path, tmp_path: Path
    ) -> None:
        real_live_db = resolved(live_db)
        async with opened(live_db) as first:
            await first.commit(Commit(jobs=[Job(id="written", task="tasks.add", due_at=0.0, created_at=0.0)]))
        link = other_names(live_db, tmp_path)["symlink"]
        async with opened(link) as second:
            assert second.lock_path == Path(f"{real_live_db}.lock")
            assert await second.get("written") is not None, "the symlink opens the same database"
            with pytest.raises(StorageLocked):
                await SqliteJobRepository(live_db).open()
        assert not any_exist(Path(f"{link}.lock"), Path(f"{link}-wal")), "no lock file nor WAL beside the symlink"

    async def test_a_second_process_given_another_name_is_refused(self, live_db: Path, tmp_path: Path) -> None:
        names = other_names(live_db, tmp_path)
        script = (
            "import asyncio, sys\n"
            "from adapters.sqlite import SqliteJobRepository, StorageLocked\n"
            "async def main():\n"
            "    for path in sys.argv[1:]:\n"
            "        try:\n"
            "            await SqliteJobRepository(path).open()\n"
            "        except StorageLocked as exc:\n"
            "            print('refused', exc, flush=True)\n"
            "        else:\n"
            "            print('OPENED', path, flush=True)\n"
            "asyncio.run(main())\n"
        )
        async with opened(live_db):
            child = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                script,
                *map(str, names.values()),
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(child.communicate(), 60)
        assert child.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        assert len(lines) == len(names), out.decode()
        assert all(line.startswith("refused ") and "in use by another engine" in line for line in lines), lines

    async def test_a_relative_path_through_dot_dot_is_refused(
        self, live_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "cwd").mkdir()
        monkeypatch.chdir(tmp_path / "cwd")
        async with opened(Path("..") / "data" / live_db.name):
            with pytest.raises(StorageLocked):
                await SqliteJobRepository(live_db).open()

    async def test_a_database_with_a_second_hard_link_is_refused(self, live_db: Path, tmp_path: Path) -> None:
        async with opened(live_db):
            pass
        hard = tmp_path / "hard.db"
        os.link(live_db, hard)
        for path in (live_db, hard):
            with pytest.raises(StorageLocked) as caught:
                await SqliteJobRepository(path).open()
            assert "2 hard links" in str(caught.value) and str(path) in str(caught.value)
        hard.unlink()
        async with opened(live_db):
            pass


@pytest.fixture(params=[0o022, 0o000, 0o077, 0o277], ids=lambda umask: f"umask-{umask:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process's umask set for the test (and restored after it)."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes(*paths: Path) -> dict[str, str]:
    return {path.name: oct(mode(path)) for path in paths}


def job(job_id: str) -> Job:
    return Job(id=job_id, task="tasks.add", due_at=0.0, created_at=0.0)


class TestPrivateFiles:
    async def test_a_new_database_its_wal_shm_lock_and_directories_are_private_whatever_the_umask(
        self, tmp_path: Path, umask: int
    ) -> None:
        os.chmod(tmp_path, 0o755)
        db = tmp_path / "new" / "deeper" / "tasks.db"
        async with opened(db) as repo:
            await repo.commit(Commit(jobs=[job("secret-arguments")]))
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")]
            assert modes(*files) == {path.name: "0o600" for path in files}
            directories = [tmp_path / "new", tmp_path / "new" / "deeper"]
            assert modes(*directories) == {path.name: "0o700" for path in directories}
        assert mode(tmp_path) == 0o755, "a directory the engine did not create keeps its mode"
        async with opened(db) as repo:  # and it opens again (the lock file is still readable and writable)
            assert await repo.get("secret-arguments") is not None

    async def test_an_existing_loose_database_is_tightened_when_opened(self, tmp_path: Path, umask: int) -> None:
        db = tmp_path / "tasks.db"
        async with opened(db) as repo:
            await repo.commit(Commit(jobs=[job("old")]))
            reader = sqlite3.connect(db)  # keeps the -wal and -shm after the engine closes
        try:
            assert reader.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
            files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")]
            for path in files:
                os.chmod(path, 0o666 if path.suffix == ".lock" else 0o644)
            async with opened(db) as repo:
                assert modes(*files) == {path.name: "0o600" for path in files}
                assert await repo.get("old") is not None
        finally:
            reader.close()

    def test_tightening_follows_no_symlink_and_leaves_missing_files_alone(self, tmp_path: Path) -> None:
        from adapters.sqlite.files import tighten

        elsewhere = tmp_path / "elsewhere.txt"
        elsewhere.write_text("not the engine's")
        os.chmod(elsewhere, 0o644)
        (tmp_path / "tasks.db-wal").symlink_to(elsewhere)
        tighten(tmp_path / "tasks.db-wal")
        tighten(tmp_path / "missing.db")
        assert mode(elsewhere) == 0o644
        assert not (tmp_path / "missing.db").exists()
