"""Idempotent submission: the key a caller gives with a submission, the rule a key follows, and the stored
form of a key (:class:`~application.ports.IdempotencyKey`). :class:`~application.job_service.JobService`
stores a key with what it creates, in the same commit, and answers a repeat with what was stored."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple

import msgspec

from application.ports import IdempotencyKey
from domain.canvas import Canvas
from domain.errors import IdInUse, InvalidIdempotencyKey
from domain.job import Job
from domain.states import is_terminal
from domain.workflow import Workflow

MAX_KEY_LENGTH: Final = 255
"""The longest idempotency key accepted."""


class Idempotency(NamedTuple):
    """An idempotency key given with a submission, and the fingerprint of the request it stands for (equal
    requests, equal fingerprints: the caller decides what makes two requests the same)."""

    key: str
    fingerprint: str


def check_idempotency_key(key: object) -> str:
    """``key`` if it is a usable idempotency key: a string of 1 to 255 printable ASCII characters but the
    comma, not all spaces; else :class:`InvalidIdempotencyKey` (a ``ValueError``) saying why. (No comma: HTTP
    reads a repeated header as one value, its values joined by commas, and a request has one key.)"""
    if not isinstance(key, str):
        raise InvalidIdempotencyKey(f"an idempotency key is a string, got {type(key).__name__}")
    if not key.strip():
        raise InvalidIdempotencyKey("an idempotency key must not be empty or blank")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidIdempotencyKey(f"an idempotency key has at most {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not all(" " <= char <= "~" for char in key):
        raise InvalidIdempotencyKey("an idempotency key holds printable ASCII characters only (space to '~')")
    if "," in key:
        raise InvalidIdempotencyKey(
            "an idempotency key holds no comma: one key is given once "
            "(a repeated header reads as a comma-separated list)"
        )
    return key


KEY_ATTEMPTS: Final = 3
"""Tries of a keyed submission: a key found taken by a concurrent one is read again (it was stored); only a
key freed again at once (its target deleted) may take another."""


def key_for(idempotency: Idempotency, kind: Literal["job", "workflow"], target: str, now: float) -> IdempotencyKey:
    """The stored form of ``idempotency`` for the ``kind`` ``target`` it creates at ``now``."""
    return IdempotencyKey(
        key=idempotency.key, fingerprint=idempotency.fingerprint, kind=kind, target=target, created_at=now
    )


def submission_key(key: object, canvas: Canvas) -> Idempotency | None:
    """The :class:`Idempotency` of a Python submission of ``canvas`` under ``key`` (None: no key); raises
    :class:`InvalidIdempotencyKey` for a malformed key."""
    return None if key is None else Idempotency(check_idempotency_key(key), canvas_fingerprint(canvas))


def canvas_fingerprint(canvas: Canvas) -> str:
    """The fingerprint of a submission of ``canvas`` (a lone call or a whole canvas) from Python: its canonical
    JSON (keys sorted), every call's ``expires`` left out (an ``expires`` in seconds becomes a different time
    at each call, and a repeat is the same request)."""
    plain = _without_expiry(msgspec.to_builtins(canvas))
    return hashlib.sha256(msgspec.json.encode(plain, order="sorted")).hexdigest()


def _without_expiry(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_expiry(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("type") == "signature":
        node = {key: value for key, value in node.items() if key != "expires"}
        for key in ("link", "link_error"):
            if key in node:
                node[key] = _without_expiry(node[key])
        return node
    return {key: _without_expiry(value) for key, value in node.items()}


def reused_in_use(jobs: Sequence[Job], workflows: dict[str, Workflow | None], *, call: Job | None = None) -> Job | None:
    """Raise :class:`IdInUse` for the first of ``jobs`` (found under ids given at submission) still in use:
    not finished, or in a workflow (of ``workflows``, by id) not finished. Except the same ``call`` again: an
    unfinished lone job with its id, task and arguments is returned (a task sent twice under one
    ``task_id`` while the first is queued or running is stored once, as an idempotent submission)."""
    for job in jobs:
        if not is_terminal(job.state):
            if call is not None and job.workflow_id is None and _same_call(job, call):
                return job
            raise IdInUse(job.id, job.task)
        workflow = workflows.get(job.workflow_id) if job.workflow_id is not None else None
        if workflow is not None and not is_terminal(workflow.state):
            raise IdInUse(job.id)
    return None


def _same_call(stored: Job, call: Job) -> bool:
    """Whether ``call`` asks for what ``stored`` is (compared as stored: JSON, a tuple is a list)."""
    return stored.id == call.id and _encode([stored.task, stored.args, stored.kwargs]) == _encode(
        [call.task, call.args, call.kwargs]
    )


_encode = msgspec.json.Encoder(order="sorted").encode
