"""Metrics: what the service counts from the engine's events, and renders for a scraper."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from application.events import Event


@runtime_checkable  # the HTTP layer injects it by this type, and checks what it is given
class Metrics(Protocol):
    """Observes every event of the bus and each HTTP request answered, and renders the counters in a
    scraper's text format."""

    def observe(self, event: Event) -> None: ...

    def observe_request(self, *, method: str, route: str, status: int, seconds: float | None) -> None:
        """One HTTP request answered: ``route`` is its template (``/jobs/{job_id}``), not the raw path;
        ``seconds`` until its response started (None: not timed)."""
        ...

    def render(
        self,
        *,
        running: int,
        states: dict[str, int],
        stuck_threads: int = 0,
        queue_depths: dict[str, int] | None = None,
    ) -> str:
        """``queue_depths``: the queued jobs of the shared storage per named queue."""
        ...
