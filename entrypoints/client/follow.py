"""Follow a job or a workflow to its terminal state: its event stream first, polling if the stream breaks."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from entrypoints.client.errors import ClientError, ServiceUnavailable, StreamBroken, WaitTimeout

if TYPE_CHECKING:
    from entrypoints.client.http import ApiClient, Reply

TERMINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
FAILED_STATES = frozenset({"FAILURE", "REVOKED"})


class Watcher:
    """What a follower reports to; the default ignores everything (``submit --wait`` in JSON mode)."""

    def snapshot(self, document: dict[str, Any], raw: str) -> None:
        """The whole job or workflow: the stream's first message, or a poll that saw a change."""

    def event(self, name: str, event: dict[str, Any], raw: str) -> None:
        """One event of the stream (``name`` is ``state`` or ``progress``)."""

    def note(self, message: str) -> None:
        """Something the follower did on its own (falling back to polling)."""


def follow(
    client: ApiClient,
    collection: str,
    ident: str,
    watcher: Watcher,
    *,
    timeout: float | None = None,
    reconnect_grace: float = 30.0,
) -> Reply:
    """Wait until ``/{collection}/{ident}`` is SUCCESS, FAILURE or REVOKED and return it as read then.

    ``collection`` is ``jobs`` or ``workflows``. Raises :class:`ClientError` (404: no such id) before
    reporting anything, :class:`WaitTimeout` after ``timeout`` seconds, :class:`ServiceUnavailable`
    when the service stays unreachable for ``reconnect_grace`` seconds.
    """
    noun = collection.rstrip("s")
    path = f"/{collection}/{ident}"
    deadline = None if timeout is None else time.monotonic() + timeout
    last_state = "unknown"
    finished = False
    try:
        try:
            for message in client.events(f"{path}/events", deadline=deadline):
                data = message.data
                if not isinstance(data, dict):
                    continue
                if "kind" not in data:
                    watcher.snapshot(data, message.raw)
                    last_state = str(data.get("state"))
                    finished = last_state in TERMINAL_STATES
                else:
                    watcher.event(message.event, data, message.raw)
                    if data.get("id") == ident and message.event == "state":
                        last_state = str(data.get("state"))
                        finished = last_state in TERMINAL_STATES
                if finished:
                    break
        except StreamBroken as exc:
            watcher.note(f"{exc}; polling instead")
        else:
            if finished:
                return client.get(path)
            watcher.note(f"the event stream of {noun} {ident} ended before its end; polling instead")
        return _poll(client, path, watcher, deadline, reconnect_grace)
    except WaitTimeout:
        raise WaitTimeout(
            f"gave up after {timeout:g} s waiting for {noun} {ident} to finish (last seen {last_state})"
        ) from None


def _poll(client: ApiClient, path: str, watcher: Watcher, deadline: float | None, grace: float) -> Reply:
    interval = 0.1
    last_contact = time.monotonic()
    seen: tuple[Any, str] | None = None
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout("deadline passed")
        try:
            reply = client.get(path)
        except (ServiceUnavailable, ClientError) as exc:
            temporary = isinstance(exc, ServiceUnavailable) or (isinstance(exc, ClientError) and exc.status >= 500)
            if not temporary or time.monotonic() - last_contact > grace:
                raise
        else:
            last_contact = time.monotonic()
            document = reply.data if isinstance(reply.data, dict) else {}
            state = document.get("state")
            key = (state, json.dumps([document.get("progress"), document.get("nodes")], sort_keys=True))
            if key != seen:
                seen = key
                watcher.snapshot(document, reply.text)
            if state in TERMINAL_STATES:
                return reply
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)
