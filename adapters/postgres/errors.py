"""The errors of the PostgreSQL storage, and what an ``asyncpg`` error that reached a caller stands for.

The repository raises :class:`StorageError` (a ``StorageUnavailable``) when the database cannot be opened;
errors the driver raises later (a lost connection, a full disk, a server shutting down) pass through the
repository, and :func:`storage_failure`, wired in by the container, reads them as the application's
storage errors, as ``adapters.sqlite_errors`` does for SQLite.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from application.ports import storage as ports_storage

__all__ = [
    "SchemaTooNew",
    "StorageClosed",
    "StorageError",
    "one_line",
    "redacted",
    "storage_failure",
]


class StorageError(ports_storage.StorageUnavailable):
    """The database cannot be used (see the subclasses); the message names it, never its password."""


class SchemaTooNew(StorageError):
    """The database was migrated by a newer version of the engine."""


class StorageClosed(StorageError):
    """A call was made while the repository is not open."""


_LOCKED: Final = (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError)
_UNAVAILABLE: Final = (
    asyncpg.PostgresConnectionError,  # the connection failed or no longer exists
    asyncpg.InterfaceError,  # the client side: a closed connection, a closing pool (not a bad value: below)
    asyncpg.InternalClientError,  # the client's protocol out of step with the server (a connection it ended)
    asyncpg.InsufficientResourcesError,  # out of memory, too many connections
    asyncpg.OperatorInterventionError,  # shutting down, starting up, cancelled by an administrator
    asyncpg.InvalidCatalogNameError,  # no such database
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidPasswordError,
    asyncpg.ReadOnlySQLTransactionError,  # a standby, or default_transaction_read_only
    ConnectionError,  # the socket: refused, reset
)


def storage_failure(exc: BaseException) -> ports_storage.StorageUnavailable | None:
    """The :class:`~application.ports.storage.StorageUnavailable` that ``exc`` stands for (``None`` if it is
    no storage failure); its message is PostgreSQL's (or the driver's) own, on one line."""
    if isinstance(exc, ports_storage.StorageUnavailable):
        return exc
    if isinstance(exc, asyncpg.DiskFullError):
        return ports_storage.StorageFull(one_line(exc))
    if isinstance(exc, _LOCKED):
        return ports_storage.StorageLocked(one_line(exc))
    if isinstance(exc, _UNAVAILABLE) and not isinstance(exc, ValueError):  # a value it cannot send is no outage
        return ports_storage.StorageUnavailable(one_line(exc))
    return None


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def redacted(url: str) -> str:
    """``url`` without its password (and query), to name the database in messages and logs."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "postgresql://(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    user = f"{parts.username}@" if parts.username else ""
    netloc = f"{user}{host}{'' if port is None else f':{port}'}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
