"""Server-sent event streams: the current state first, then every change, closing after the terminal state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from application.events import Event
from application.ports import Subscription
from entrypoints.http.schemas import EventOut, iso

KEEPALIVE_SECONDS = 15.0
_encoder = msgspec.json.Encoder()


def encode(value: object) -> str:
    return _encoder.encode(value).decode()


def event_message(event: Event) -> ServerSentEventMessage:
    body = EventOut(
        kind=event.kind,
        id=event.id,
        state=event.state,
        at=iso(event.at),
        task=event.task,
        workflow_id=event.workflow_id,
        progress=event.progress,
        result=event.result,
        error=event.error,
    )
    return ServerSentEventMessage(data=encode(body), event="progress" if event.progress is not None else "state")


def stream(
    subscription: Subscription, first: ServerSentEventMessage, *, done: bool, ends: Callable[[Event], bool]
) -> ServerSentEvent:
    """A stream that sends ``first``, then each event until ``ends(event)``; closes its subscription."""

    async def messages() -> AsyncIterator[ServerSentEventMessage]:
        try:
            yield first
            if done:
                return
            while True:
                event = await subscription.next(KEEPALIVE_SECONDS)
                if event is None:
                    yield ServerSentEventMessage(comment="keepalive")
                    continue
                yield event_message(event)
                if ends(event):
                    return
        finally:
            subscription.close()

    return ServerSentEvent(messages(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
