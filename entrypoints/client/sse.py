"""Parse a ``text/event-stream`` (server-sent events) into ``(event, data)`` pairs."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


def parse_events(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """The messages of an event stream given as lines (without or with their ``\\r\\n``/``\\n`` ends).

    A blank line ends a message; ``event:`` names it (``message`` if absent); ``data:`` lines are joined
    with newlines; comment lines (``: keepalive``), ``id:``, ``retry:`` and unknown fields are skipped.
    A message cut off by the end of the stream (no blank line after it) is dropped, as the standard says.
    """
    event = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
