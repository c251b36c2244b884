"""The real clock and id source."""

from __future__ import annotations

import time
import uuid

from application.ports import Clock, IdSource


class SystemClock(Clock):
    """Wall-clock time from the operating system."""

    def now(self) -> float:
        return time.time()


class UuidSource(IdSource):
    """Random UUID4 strings, the same shape as Celery task ids."""

    def new_id(self) -> str:
        return str(uuid.uuid4())
