"""What tests need to know of the repositories' blocking side: where a repository's ``BlockingAccess`` is,
as the composition root wires it (the memory and SQLite repositories themselves, PostgreSQL's reader)."""

from __future__ import annotations

from adapters.memory_job_repository import InMemoryJobRepository
from adapters.postgres import PostgresJobRepository
from adapters.sqlite import SqliteJobRepository
from application.ports import JobRepository
from entrypoints.compat.threads import BlockingAccess


def blocking_access(repo: JobRepository) -> BlockingAccess:
    """``repo``'s blocking reads (and commits from threads), as ``entrypoints.container`` wires them."""
    if isinstance(repo, PostgresJobRepository):
        return repo.blocking
    assert isinstance(repo, (InMemoryJobRepository, SqliteJobRepository)), repo
    return repo
