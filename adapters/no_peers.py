"""The link of an engine alone on its storage (SQLite, memory): there is nobody to tell anything."""

from __future__ import annotations

from application.events import Event
from application.ports.peers import PeerInbox, PeerLink


class NoPeers(PeerLink):
    """A :class:`PeerLink` that is not shared: it sends nothing and hears nothing, so the engine keeps
    its single-engine hot path (no relay, no poll)."""

    @property
    def shared(self) -> bool:
        return False

    async def open(self, inbox: PeerInbox, *, name: str) -> None:
        return None

    async def close(self) -> None:
        return None

    def work_queued(self) -> None:
        return None

    def relay(self, event: Event) -> None:
        return None

    async def cancel_on(self, owner: str, job_id: str, *, timeout: float) -> bool:
        return False
