"""The errors of the SQLite storage: a database file that cannot be used, and why."""

from __future__ import annotations

from application.ports import storage as ports_storage

__all__ = ["NotADatabase", "SchemaTooNew", "StorageClosed", "StorageError", "StorageLocked"]


class StorageError(ports_storage.StorageUnavailable):
    """The database file cannot be used (see the subclasses); the message names the path."""


class StorageLocked(StorageError, ports_storage.StorageLocked):
    """Another engine (process) has the database open."""


class SchemaTooNew(StorageError):
    """The database was written by a newer version of the engine."""


class NotADatabase(StorageError):
    """The file exists but is not a SQLite database (or is corrupt)."""


class StorageClosed(StorageError):
    """A write was attempted while the repository is not open."""


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
