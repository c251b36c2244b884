"""What one engine's NOTIFY carries to the other engines of its database: a packet of msgspec JSON, under
PostgreSQL's payload limit (8000 bytes), built from everything queued since the last send.

A packet says who sent it, whether work was queued (one flag for a whole burst), the events published
(in publish order), and cancel requests and their answers. Any packet also says its sender is alive:
``hello`` (an engine that starts listening asks the others to answer), an empty packet (a heartbeat, or
the answer to a hello) and ``bye`` (it stops) let each engine know whether anyone listens at all.

An event too big for a payload goes as a *light* copy, without its result, error and progress meta,
which the receiver reads from the database (the job or workflow as stored; a project's event arrives
without its meta); a packet never holds more than fits, so a burst is cut into as few payloads as it
needs.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from application.events import Event
from domain.job import Progress

__all__ = ["CHANNEL", "PAYLOAD_LIMIT", "CancelAnswer", "CancelAsk", "Outbox", "Packet", "light", "pack"]

log = logging.getLogger(__name__)

CHANNEL: Final = "geekblog_tasks"
"""The one channel the engines of a database talk on (NOTIFY is per database)."""

PAYLOAD_LIMIT: Final = 7900
"""The most bytes a payload holds here: PostgreSQL refuses one of 8000 bytes or more."""


class CancelAsk(msgspec.Struct, frozen=True, kw_only=True):
    """Engine ``to`` (a lease owner id) is asked to cancel job ``job``; ``ask`` numbers the request."""

    to: str
    job: str
    ask: int


class CancelAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to request ``ask`` of engine ``to``: ``done`` once the revocation is stored."""

    to: str
    ask: int
    done: bool


class Packet(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One payload. ``events`` holds ``["e", event]`` (whole) and ``["r", event]`` (light: read the rest
    from the database), in the order they were published."""

    sender: str
    due: bool = False
    hello: bool = False
    bye: bool = False
    events: list[msgspec.Raw] = msgspec.field(default_factory=list)
    asks: list[CancelAsk] = msgspec.field(default_factory=list)
    answers: list[CancelAnswer] = msgspec.field(default_factory=list)


_encoder: Final = msgspec.json.Encoder()
_packet_decoder: Final = msgspec.json.Decoder(Packet)
_item_decoder: Final = msgspec.json.Decoder(tuple[Literal["e", "r"], Event])
_LIST_KEYS: Final = len(',"events":[],"asks":[],"answers":[]')


def decode(payload: str) -> Packet:
    """A received payload as a packet (``msgspec.DecodeError`` if it is not one)."""
    return _packet_decoder.decode(payload)


def item(raw: msgspec.Raw) -> tuple[Literal["e", "r"], Event]:
    """One entry of :attr:`Packet.events`: whether it is whole (``e``) or light (``r``), and the event."""
    return _item_decoder.decode(raw)


def light(event: Event) -> Event:
    """``event`` without what may be big: its result, error and progress meta (the state of its progress
    stays, so a progress event is still one)."""
    progress = None if event.progress is None else Progress(state=event.progress.state)
    return msgspec.structs.replace(event, result=None, error=None, progress=progress)


def pack(
    sender: str,
    *,
    due: bool = False,
    hello: bool = False,
    bye: bool = False,
    beat: bool = False,
    events: Iterable[Event] = (),
    asks: Iterable[CancelAsk] = (),
    answers: Iterable[CancelAnswer] = (),
) -> list[str]:
    """Payloads carrying all of this, each under :data:`PAYLOAD_LIMIT` bytes, events in order; with
    ``beat`` (or ``hello``, ``bye``) at least one, empty if nothing else is carried."""
    builder = _Builder(Packet(sender=sender, due=due, hello=hello, bye=bye), keep=beat or hello or bye)
    for ask in asks:
        builder.add("asks", _encoder.encode(ask), ask)
    for answer in answers:
        builder.add("answers", _encoder.encode(answer), answer)
    for event in events:
        try:
            raw = b'["e",' + _encoder.encode(event) + b"]"
            if len(raw) > builder.room:
                raw = b'["r",' + _encoder.encode(light(event)) + b"]"
        except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
            log.warning("event of %s %s not relayed: it cannot be encoded (%s)", event.kind, event.id, exc)
            continue
        if len(raw) > builder.room:
            log.warning(
                "event of %s %s not relayed: even without its result it takes %d bytes", event.kind, event.id, len(raw)
            )
            continue
        builder.add("events", raw, msgspec.Raw(raw))
    return builder.payloads()


class _Builder:
    """Fills packets in turn, each up to the limit (sizes counted from the encoded entries)."""

    def __init__(self, first: Packet, *, keep: bool) -> None:
        self._sender = first.sender
        self._base = len(_encoder.encode(Packet(sender=first.sender, due=True, hello=True, bye=True))) + _LIST_KEYS
        self.room = PAYLOAD_LIMIT - self._base - 1
        """The most bytes one entry may take (alone in a packet)."""
        self._done: list[str] = []
        self._packet = first
        self._size = self._base
        self._empty = not (keep or first.due)

    def add(self, field: Literal["events", "asks", "answers"], encoded: bytes, value: object) -> None:
        if self._size + len(encoded) + 1 > PAYLOAD_LIMIT:
            self._flush()
        getattr(self._packet, field).append(value)
        self._size += len(encoded) + 1
        self._empty = False

    def _flush(self) -> None:
        if not self._empty:
            self._done.append(_encoder.encode(self._packet).decode())
        self._packet = Packet(sender=self._sender)
        self._size = self._base
        self._empty = True

    def payloads(self) -> list[str]:
        self._flush()
        return self._done


class Outbox:
    """What waits to be sent, taken as payloads by the sender. Events beyond ``max_events`` waiting push
    out the oldest (counted in :attr:`dropped`): the sender is behind, and subscribers lose the oldest
    events, never the publisher's time (as the bus does)."""

    def __init__(self, sender: str, *, max_events: int = 50_000) -> None:
        self.sender = sender
        self.due = False
        self.hello = False
        self.bye = False
        self.beat = False
        self.events: deque[Event] = deque(maxlen=max_events)
        self.asks: list[CancelAsk] = []
        self.answers: list[CancelAnswer] = []
        self.dropped = 0
        self._final = False  # an event that ends something waits

    def add_event(self, event: Event) -> None:
        if len(self.events) == self.events.maxlen:
            self.dropped += 1
        self.events.append(event)
        if event.terminal:
            self._final = True

    @property
    def urgent(self) -> bool:
        """Whether what waits should go now: work queued, an engine starting or stopping, a cancel asked or
        answered, or an event that ends a job or workflow. The rest (a job started, progress, a heartbeat)
        can wait a little for such an event to go along with it."""
        return self.due or self.hello or self.bye or self._final or bool(self.asks) or bool(self.answers)

    def take(self) -> list[str]:
        """Everything waiting, as payloads; the outbox is then empty."""
        if not (self.due or self.hello or self.bye or self.beat or self.events or self.asks or self.answers):
            return []
        events, self.events = self.events, deque(maxlen=self.events.maxlen)
        asks, self.asks = self.asks, []
        answers, self.answers = self.answers, []
        due, self.due = self.due, False
        self._final = False
        hello, bye, beat = self.hello, self.bye, self.beat
        self.hello = self.bye = self.beat = False
        return pack(self.sender, due=due, hello=hello, bye=bye, beat=beat, events=events, asks=asks, answers=answers)
