"""Port: where task code actually executes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Runner(Protocol):
    """Runs one task function and returns its value or raises its exception.

    Coroutine functions run on the event loop; plain functions run off it (a thread pool), in a
    copy of the caller's context so context variables set for the job are visible to the task.
    Cancelling the awaiting coroutine cancels an async task at once; a sync task keeps running
    until it next checks for cancellation.
    """

    async def run(self, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], *, is_async: bool) -> Any: ...

    async def close(self) -> None: ...

    @property
    def stuck(self) -> int:
        """Threads still busy with a task that was cancelled or timed out (Python cannot stop them)."""
        ...
