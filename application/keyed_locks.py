"""One ``asyncio.Lock`` per key, kept only while someone holds or waits for it.

The dispatcher stores the outcomes of one workflow's jobs one at a time: each is then planned on the
state the previous one committed, instead of every outcome finishing at once (a chord's members) being
planned on the same version, all but one refused, and planned again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """``async with locks.held(key)``: one holder per key at a time; no lock at all for key ``None``."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def held(self, key: str | None) -> AsyncIterator[None]:
        if key is None:
            yield
            return
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
