"""Server-sent event streams of a job, a workflow or a project: resumable, one schema per event type.

A stream sends ``state`` events (:class:`StateEvent`: a job's, a workflow's or a project's state) and
``progress`` events (:class:`ProgressEvent`: what a running job or the article pipeline reports), each with an
``id``, and closes after the terminal state. A new stream starts with a snapshot: the current state as
``state`` events (a workflow's, then each of its steps'). Each later event's ``id`` is
``<epoch>-<seq>``, its number on the engine's event bus; a snapshot's last event has the bus's position
when the stream began (``<epoch>-<position>``), its earlier ones ``<epoch>-<position>.<n>``.

A client reconnecting with ``Last-Event-ID: <epoch>-<seq>`` gets exactly the events of that resource after
it, no gap and no repeat, as long as the bus still retains them (the latest ``RETAINED_EVENTS`` events of
each of the ``RETAINED_KEYS`` most recently streamed or active jobs, workflows and projects, from their
first stream on, in the process serving the stream). Otherwise (an unknown, foreign or older id, another
process or a restart since, or the id of a snapshot's earlier part) the stream starts over from a snapshot.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Annotated, Any, Literal

import msgspec
from litestar.params import HeaderParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from msgspec import Meta

from application.events import Event
from application.ports import EventBus, Subscription
from domain.job import ErrorInfo, Progress
from domain.project import ProjectStatus
from domain.states import JobState
from entrypoints.http.schemas import iso

KEEPALIVE_SECONDS = 15.0
_encoder = msgspec.json.Encoder()
ID_PATTERN = r"^[0-9a-f]+-[0-9]+(\.[0-9]+)?$"
_RESUMABLE = re.compile(r"([0-9a-f]+)-([0-9]{1,18})")

LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        max_length=64,
        schema_extra={"one_of": None, "type": "string"},  # a header is absent, never null
        description="Resume after this event id (what EventSource sends when it reconnects): see the stream's "
        "description",
    ),
]

At = Annotated[str, Meta(extra_json_schema={"format": "date-time"}, description="When (ISO 8601, UTC)")]
STATES = [*JobState.__members__, *(s.value for s in ProjectStatus if s.value not in JobState.__members__)]


class StateEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``event: state``: a job, workflow or project is now in ``state`` (a project's status)."""

    kind: Literal["job", "workflow", "project"]
    id: str
    state: Annotated[str, Meta(extra_json_schema={"enum": STATES})]
    at: At
    task: str | None = None
    workflow_id: str | None = None
    result: Any = None
    error: ErrorInfo | None = None


class ProgressEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``event: progress``: what a running job reported (``update_state``) or where the article pipeline is;
    ``state`` is the reported one (``PROGRESS`` by convention), the same as ``progress.state``."""

    kind: Literal["job", "project"]
    id: str
    state: str
    at: At
    progress: Progress
    task: str | None = None
    workflow_id: str | None = None


def encode(value: object) -> str:
    return _encoder.encode(value).decode()


def state_event(
    kind: Literal["job", "workflow", "project"],
    id: str,
    state: str,
    at: float,
    *,
    task: str | None = None,
    workflow_id: str | None = None,
    result: Any = None,
    error: ErrorInfo | None = None,
) -> StateEvent:
    return StateEvent(
        kind=kind, id=id, state=state, at=iso(at), task=task, workflow_id=workflow_id, result=result, error=error
    )


def event_message(event: Event, epoch: str) -> ServerSentEventMessage:
    ident = f"{epoch}-{event.seq}"
    if event.progress is not None:
        kind: Literal["job", "project"] = "project" if event.kind == "project" else "job"
        body: StateEvent | ProgressEvent = ProgressEvent(
            kind=kind,
            id=event.id,
            state=event.state,
            at=iso(event.at),
            progress=event.progress,
            task=event.task,
            workflow_id=event.workflow_id,
        )
        return ServerSentEventMessage(data=encode(body), event="progress", id=ident)
    body = state_event(
        event.kind,
        event.id,
        event.state,
        event.at,
        task=event.task,
        workflow_id=event.workflow_id,
        result=event.result,
        error=event.error,
    )
    return ServerSentEventMessage(data=encode(body), event="state", id=ident)


class Opened:
    """A stream's subscription and whether it resumes a ``Last-Event-ID`` (then no snapshot is sent)."""

    def __init__(self, bus: EventBus, key: str, last_event_id: str | None) -> None:
        self.epoch = bus.epoch
        after = resume_point(bus.epoch, last_event_id)
        resumed = bus.resume(key, after) if after is not None else None
        self.resumed = resumed is not None
        self.position = bus.position
        # From the bus's position: a plain subscription, and the bus keeps the key's events for a resume.
        fresh = resumed or bus.resume(key, self.position)
        self.subscription: Subscription = fresh if fresh is not None else bus.subscribe(key)

    def snapshot(self, events: Sequence[StateEvent]) -> list[ServerSentEventMessage]:
        """The snapshot's messages (none when resuming): the last one's id is the position."""
        if self.resumed:
            return []
        last = len(events) - 1
        return [
            ServerSentEventMessage(
                data=encode(event),
                event="state",
                id=f"{self.epoch}-{self.position}" + ("" if n == last else f".{n}"),
            )
            for n, event in enumerate(events)
        ]


def resume_point(epoch: str, last_event_id: str | None) -> int | None:
    """The ``seq`` a ``Last-Event-ID`` of this bus's epoch names; None for any other id."""
    if last_event_id is None:
        return None
    match = _RESUMABLE.fullmatch(last_event_id.strip())
    if match is None or match.group(1) != epoch:
        return None
    return int(match.group(2))


def stream(
    opened: Opened,
    first: Sequence[ServerSentEventMessage],
    *,
    done: bool,
    ends: Callable[[Event], bool],
) -> ServerSentEvent:
    """A stream that sends ``first``, then each event until ``ends(event)``; closes its subscription.

    ``done``: the resource was in its terminal state when read: the stream ends once the snapshot, or the
    events a resume replays, are sent."""
    subscription = opened.subscription

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        try:
            for message in first:
                yield message
            if done and not opened.resumed:
                return
            while True:
                event = await subscription.next(0 if done else KEEPALIVE_SECONDS)
                if event is None:
                    if done:
                        return
                    yield ServerSentEventMessage(comment="keepalive")
                    continue
                yield event_message(event, opened.epoch)
                if ends(event):
                    return
        finally:
            subscription.close()

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
