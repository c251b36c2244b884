"""Port: what engines sharing one storage tell each other (work queued, events, cancellations).

Several engine processes may use one database (PostgreSQL). Each learns through its :class:`PeerLink`
what the others did that concerns it, instead of polling the database: work they queued (an idle engine
claims it at once), the events they published (a stream on one engine follows a job running on another),
and a request to cancel a job that runs on it. An engine alone on its storage (SQLite, memory) has a link
that tells nobody anything.
"""

from __future__ import annotations

from typing import Protocol

from application.events import Event


class PeerInbox(Protocol):
    """What an engine does with what the others tell it (the application's side of the link)."""

    def work_queued(self) -> None:
        """Another engine queued work, or the link may have missed some (it reconnected): look for it."""
        ...

    def deliver(self, event: Event) -> None:
        """An event another engine published, for this engine's subscribers."""
        ...

    async def cancel_here(self, job_id: str) -> bool:
        """Another engine asks to cancel a job this one runs: True once its revocation is stored, False
        when it does not run here."""
        ...


class PeerLink(Protocol):
    """The channel between the engines of one storage. Sending never blocks and never fails the
    sender: what cannot be sent is lost, and the engines' slow poll finds the work it announced."""

    @property
    def shared(self) -> bool:
        """Whether other engines may be listening (False: the engine is alone; nothing is sent)."""
        ...

    async def open(self, inbox: PeerInbox, *, name: str) -> None:
        """Start listening, as ``name`` (the engine's lease owner id), telling ``inbox``; returns once
        what the others send from now on reaches it."""
        ...

    async def close(self) -> None:
        """Send what is queued, then stop listening."""
        ...

    def work_queued(self) -> None:
        """Tell the others that work was queued (many calls in a burst may go out as one)."""
        ...

    def relay(self, event: Event) -> None:
        """Send an event this engine published to the others' subscribers."""
        ...

    async def cancel_on(self, owner: str, job_id: str, *, timeout: float) -> bool:
        """Ask the engine named ``owner`` to cancel the job it runs: True once it stored the revocation;
        False when it does not run it there, or gave no answer within ``timeout`` seconds."""
        ...
