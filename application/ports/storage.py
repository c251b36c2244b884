"""Storage failures every repository adapter reports the same way, so the entrypoints map them without
knowing which database is behind the ports (the HTTP layer answers each with a 503)."""

from __future__ import annotations

from collections.abc import Callable


class StorageUnavailable(Exception):
    """The storage cannot be used right now (or at all: the message says which and names the path)."""


class StorageFull(StorageUnavailable):
    """The storage has no room left: nothing was written."""


class StorageLocked(StorageUnavailable):
    """Another process holds the storage (or the lock it needs): nothing was written."""


StorageErrorTranslator = Callable[[BaseException], StorageUnavailable | None]
"""Given an exception a repository let through, the :class:`StorageUnavailable` it stands for, or ``None``
when it is not a storage failure (each adapter knows its driver's errors; the container wires one in)."""


def no_translation(exc: BaseException) -> StorageUnavailable | None:
    """A translator for adapters that already raise :class:`StorageUnavailable` (the in-memory ones)."""
    return exc if isinstance(exc, StorageUnavailable) else None
