"""Port: new identifiers for jobs and workflows."""

from __future__ import annotations

from typing import Protocol


class IdSource(Protocol):
    """Makes ids that are unique across processes sharing a database (UUIDs in production)."""

    def new_id(self) -> str: ...
