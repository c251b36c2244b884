"""PostgreSQL storage: jobs, workflows and projects in one database that several engines may share.

Modules: :mod:`~adapters.postgres.schema` (numbered migrations under an advisory lock, columns,
statements), :mod:`~adapters.postgres.rows` (row mapping), :mod:`~adapters.postgres.writer` (the pool,
the one writing connection per process, group commit), :mod:`~adapters.postgres.statements` (what the writer
runs: an operation as one statement, or a run of commits in a transaction), :mod:`~adapters.postgres.reads`
(point reads), the repositories, :mod:`~adapters.postgres.blocking` (blocking reads for plain threads, on a
loop of their own), :mod:`~adapters.postgres.errors` (what a driver error stands for), and
:mod:`~adapters.postgres.notifications` with :mod:`~adapters.postgres.peer_packets` (LISTEN/NOTIFY between
the engines of one database). The driver is asyncpg (see ``bench/pg_driver_choice.py`` for why).
"""

from adapters.postgres.blocking import PostgresBlockingReader
from adapters.postgres.errors import SchemaTooNew, StorageClosed, StorageError, redacted, storage_failure
from adapters.postgres.job_repository import PostgresJobRepository
from adapters.postgres.notifications import PostgresPeerLink
from adapters.postgres.project_repository import PostgresProjectRepository
from adapters.postgres.schedule_store import PostgresScheduleStore
from adapters.postgres.schema import MIGRATIONS, SCHEMA_VERSION, TABLES
from adapters.postgres.writer import MAX_BATCH, PostgresWriter

__all__ = [
    "MAX_BATCH",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "TABLES",
    "PostgresBlockingReader",
    "PostgresJobRepository",
    "PostgresPeerLink",
    "PostgresProjectRepository",
    "PostgresScheduleStore",
    "PostgresWriter",
    "SchemaTooNew",
    "StorageClosed",
    "StorageError",
    "redacted",
    "storage_failure",
]
