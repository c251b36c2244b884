"""The database file: private modes, the engine's lock file, and opening the connections.

One engine per database file: :func:`take_lock` holds an exclusive ``flock`` on ``<real path>.lock``
until its descriptor is closed, where the real path is the given one with symlinks and ``..`` resolved,
so every name of the file (a symlink, a path through ``..``, a bind-mounted directory) meets the same
lock. A file with more than one hard link is refused: another link would be another name with its own
lock (and its own ``-wal``, for SQLite).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import stat
from pathlib import Path
from typing import Final

from adapters.sqlite.errors import StorageError, StorageLocked

SYNCHRONOUS_MODES: Final[frozenset[str]] = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

PRIVATE_FILE: Final = 0o600
PRIVATE_DIRECTORY: Final = 0o700
"""The modes of the files the engine writes (the database, its ``-wal``/``-shm``/``-journal``, the lock
file, backups) and of the directories it creates for them, whatever the umask: they hold every task's
arguments and results. (SQLite gives the files it creates beside a database the database's own mode.)"""


def make_private_directories(directory: str | os.PathLike[str]) -> None:
    """Create ``directory`` and its missing parents, each 0700 whatever the umask; existing ones are left as
    they are (the operator chose their modes)."""
    missing: list[Path] = []
    current = Path(directory)
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, PRIVATE_DIRECTORY)
        except FileExistsError:
            if not path.is_dir():
                raise
        else:
            os.chmod(path, PRIVATE_DIRECTORY)  # mkdir's mode is masked by the umask


def create_private_file(path: str | os.PathLike[str]) -> bool:
    """Create ``path`` empty and 0600 whatever the umask; False (nothing done) if it exists already."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def tighten(path: str | os.PathLike[str]) -> None:
    """Take the group's and others' permissions off an existing regular file (a symlink is not followed;
    a missing file, or one another user owns, is left alone)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o077:
        with contextlib.suppress(PermissionError):
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


def take_lock(path: Path, lock_path: Path) -> int:
    """The descriptor of ``lock_path``, exclusively locked (:class:`StorageLocked` if another engine holds it)."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_mode & 0o777 != PRIVATE_FILE:
            with contextlib.suppress(PermissionError):  # another user's lock file keeps its mode
                os.fchmod(fd, PRIVATE_FILE)
    except BlockingIOError:
        os.close(fd)
        raise StorageLocked(f"{path} is in use by another engine (lock file {lock_path})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def make_files_private(real_path: Path) -> None:
    """The database created 0600 (before SQLite creates it with the umask's mode); an existing one, and
    its ``-wal``, ``-shm`` and ``-journal``, lose any group or other permissions (SQLite creates those
    files with the database's mode, but leaves existing ones as they are)."""
    if not create_private_file(real_path):
        for suffix in ("", "-wal", "-shm", "-journal"):
            tighten(f"{real_path}{suffix}")


def refuse_other_links(path: Path, real_path: Path) -> None:
    """A database file with several hard links could be opened by another engine under another name
    (another lock file, another ``-wal``): refused, like a locked one."""
    try:
        links = os.stat(real_path).st_nlink
    except FileNotFoundError:
        return
    if links > 1:
        raise StorageLocked(
            f"{path} has {links} hard links: another engine could open it under another name;"
            " keep one link to the database file"
        )


def configure(
    db: sqlite3.Connection, path: Path, synchronous: str, busy_timeout_ms: int, max_size_mb: int | None
) -> None:
    """WAL journal mode (or :class:`StorageError`), the durability, the busy timeout and the size cap."""
    rows = db.execute("PRAGMA journal_mode = WAL").fetchall()
    mode = str(rows[0][0]) if rows else "?"
    if mode.lower() != "wal":
        raise StorageError(f"{path} cannot use WAL journal mode (it is in {mode} mode)")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    if max_size_mb:
        (page_size,) = db.execute("PRAGMA page_size").fetchone()
        db.execute(f"PRAGMA max_page_count = {max(max_size_mb * 1024 * 1024 // int(page_size), 1)}")


def connect(real_path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from any thread."""
    return sqlite3.connect(real_path, isolation_level=None, check_same_thread=False)


def open_reader(real_path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """The read-only connection: reads run inline on it and see the last committed state (WAL)."""
    reader = sqlite3.connect(real_path, check_same_thread=False, isolation_level=None)
    reader.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
    reader.execute("PRAGMA query_only = ON")
    return reader
