"""The PostgreSQL schedule store: periodic schedules in the engines' shared database, through its writer.

A schedule is one row: its definition as JSON, and the columns a fire compares and moves (``next_due_at``,
``revision``, ``last_tick``), which win over the copies in the JSON. Ticks are fired by the job
repository's commits (:func:`adapters.postgres.statements.fire_tick`), in the transaction storing their
job, so several engines firing the same schedule store its tick's job once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg
import msgspec

from adapters.postgres.job_repository import PostgresJobRepository
from adapters.postgres.writer import Kind, PostgresWriter
from application.ports.schedule_store import ScheduleStore
from domain.schedule import Schedule

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Schedule)
_SELECT: Final = "SELECT spec, next_due_at, revision, last_tick FROM schedules"


def _params(schedule: Schedule) -> tuple[Any, ...]:
    spec = _encoder.encode(schedule).decode()
    return (spec, schedule.next_due_at, schedule.revision, schedule.last_tick, schedule.name)


def _schedule(row: Sequence[Any] | asyncpg.Record) -> Schedule:
    spec = _decoder.decode(row[0])
    return msgspec.structs.replace(spec, next_due_at=row[1], revision=row[2], last_tick=row[3])


class PostgresScheduleStore(ScheduleStore):
    """Shares the job repository's database, migrations, group-committing writer and pool."""

    def __init__(self, database: PostgresJobRepository) -> None:
        self._database = database

    @property
    def _db(self) -> PostgresWriter:
        return self._database.writer

    async def _execute(self, statements: list[tuple[str, Sequence[Any]]]) -> int:
        self._db.check_open()
        changed: int = await self._db.submit(Kind.EXECUTE, statements)
        return changed

    async def add(self, schedule: Schedule) -> bool:
        sql = (
            "INSERT INTO schedules (spec, next_due_at, revision, last_tick, name) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (name) DO NOTHING"
        )
        return await self._execute([(sql, _params(schedule))]) == 1

    async def replace(self, schedule: Schedule, *, revision: str) -> bool:
        sql = (
            "UPDATE schedules SET spec = $1, next_due_at = $2, revision = $3, last_tick = $4"
            " WHERE name = $5 AND revision = $6"
        )
        return await self._execute([(sql, (*_params(schedule), revision))]) == 1

    async def get(self, name: str) -> Schedule | None:
        rows = await self._db.fetch(f"{_SELECT} WHERE name = $1", name)
        return _schedule(rows[0]) if rows else None

    async def list_schedules(self) -> list[Schedule]:
        return [_schedule(row) for row in await self._db.fetch(f"{_SELECT} ORDER BY name")]

    async def delete(self, name: str) -> bool:
        deleted = await self._execute(
            [
                ("DELETE FROM schedules WHERE name = $1", (name,)),
                ("DELETE FROM schedule_ticks WHERE schedule = $1", (name,)),
            ]
        )
        return deleted == 1

    async def next_schedule_due(self) -> float | None:
        due: float | None = await self._db.fetchval("SELECT min(next_due_at) FROM schedules")
        return due

    async def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        rows = await self._db.fetch(
            f"{_SELECT} WHERE next_due_at <= $1 ORDER BY next_due_at, name LIMIT $2", now, max(limit, 0)
        )
        return [_schedule(row) for row in rows]
