"""SQLite storage: jobs, workflows and projects in one database file, written by one writer.

Modules: :mod:`~adapters.sqlite.schema` (migrations, columns, statements), :mod:`~adapters.sqlite.rows`
(row mapping), :mod:`~adapters.sqlite.files` (private modes, the lock file, opening connections),
:mod:`~adapters.sqlite.writer` (the writing connection, group commit, checkpoints),
:mod:`~adapters.sqlite.due_index` (queued jobs in memory), the repositories, and
:mod:`~adapters.sqlite.maintenance` (purge and backup on the file directly).
"""

from adapters.sqlite.errors import NotADatabase, SchemaTooNew, StorageClosed, StorageError, StorageLocked
from adapters.sqlite.job_repository import SqliteJobRepository
from adapters.sqlite.project_repository import SqliteProjectRepository
from adapters.sqlite.schedule_store import SqliteScheduleStore
from adapters.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from adapters.sqlite.writer import MAX_BATCH, SqliteWriter

__all__ = [
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "NotADatabase",
    "SchemaTooNew",
    "SqliteJobRepository",
    "SqliteProjectRepository",
    "SqliteScheduleStore",
    "SqliteWriter",
    "StorageClosed",
    "StorageError",
    "StorageLocked",
]
