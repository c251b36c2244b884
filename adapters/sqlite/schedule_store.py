"""The SQLite schedule store: periodic schedules in the engine's own database file, through its writer.

A schedule is one row: its definition as JSON, and the columns a fire compares and moves (``next_due_at``,
``revision``, ``last_tick``), which win over the copies in the JSON. Ticks are fired by the job
repository's commits (:func:`adapters.sqlite.transaction.fire_tick`), in the transaction storing their job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import msgspec

from adapters.sqlite.job_repository import SqliteJobRepository
from adapters.sqlite.writer import SqliteWriter
from application.ports.schedule_store import ScheduleStore
from domain.schedule import Schedule

_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Schedule)
_SELECT: Final = "SELECT spec, next_due_at, revision, last_tick FROM schedules"


def schedule_params(schedule: Schedule) -> tuple[Any, ...]:
    """``(spec, next_due_at, revision, last_tick, name)``: what a row stores."""
    spec = _encoder.encode(schedule).decode()
    return (spec, schedule.next_due_at, schedule.revision, schedule.last_tick, schedule.name)


def schedule_from_row(row: Sequence[Any]) -> Schedule:
    spec = _decoder.decode(row[0])
    return msgspec.structs.replace(spec, next_due_at=row[1], revision=row[2], last_tick=row[3])


class SqliteScheduleStore(ScheduleStore):
    """Shares the job repository's file, migrations, group-committing writer and reader connection."""

    def __init__(self, database: SqliteJobRepository) -> None:
        self._database = database

    @property
    def _db(self) -> SqliteWriter:
        return self._database.writer

    async def add(self, schedule: Schedule) -> bool:
        sql = (
            "INSERT INTO schedules (spec, next_due_at, revision, last_tick, name) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (name) DO NOTHING"
        )
        return await self._db.execute([(sql, schedule_params(schedule))]) == 1

    async def replace(self, schedule: Schedule, *, revision: str) -> bool:
        sql = (
            "UPDATE schedules SET spec = ?, next_due_at = ?, revision = ?, last_tick = ?"
            " WHERE name = ? AND revision = ?"
        )
        return await self._db.execute([(sql, (*schedule_params(schedule), revision))]) == 1

    async def get(self, name: str) -> Schedule | None:
        rows = self._db.read(f"{_SELECT} WHERE name = ?", (name,))
        return schedule_from_row(rows[0]) if rows else None

    async def list_schedules(self) -> list[Schedule]:
        return [schedule_from_row(row) for row in self._db.read(f"{_SELECT} ORDER BY name")]

    async def delete(self, name: str) -> bool:
        deleted = await self._db.execute(
            [
                ("DELETE FROM schedules WHERE name = ?", (name,)),
                ("DELETE FROM schedule_ticks WHERE schedule = ?", (name,)),
            ]
        )
        return deleted == 1

    async def next_schedule_due(self) -> float | None:
        rows = self._db.read("SELECT min(next_due_at) FROM schedules WHERE next_due_at IS NOT NULL")
        due: float | None = rows[0][0] if rows else None
        return due

    async def due_schedules(self, now: float, limit: int) -> list[Schedule]:
        rows = self._db.read(
            f"{_SELECT} WHERE next_due_at IS NOT NULL AND next_due_at <= ? ORDER BY next_due_at, name LIMIT ?",
            (now, max(limit, 0)),
        )
        return [schedule_from_row(row) for row in rows]
