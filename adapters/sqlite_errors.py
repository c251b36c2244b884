"""What a ``sqlite3`` error that reached a caller stands for, as the application's storage errors."""

from __future__ import annotations

import sqlite3

from application.ports.storage import StorageFull, StorageLocked, StorageUnavailable


def storage_failure(exc: BaseException) -> StorageUnavailable | None:
    """The :class:`StorageUnavailable` that ``exc`` stands for (``None`` if it is no storage failure); its
    message is SQLite's own."""
    if isinstance(exc, StorageUnavailable):
        return exc
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    text = str(exc)
    if "full" in text:
        return StorageFull(text)
    if "locked" in text or "busy" in text:
        return StorageLocked(text)
    return StorageUnavailable(text)
