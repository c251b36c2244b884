"""The HTTP form of a canvas, ``{"task": ...} | {"chain": [...]} | {"group": [...]} | {"chord": {...}}``.

Parsed by hand rather than by a tagged union so that limits on depth and size are checked while
walking (a canvas bomb is refused with a 4xx, never a recursion error) and every error names the
place in the canvas where it is.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec

from domain.canvas import MAX_DEPTH, MAX_NODES, Canvas, Chain, Chord, Group, Signature, chain_of
from domain.errors import InvalidCallOption, InvalidCanvas
from domain.json_values import ensure_json
from entrypoints.http.options import canvas_options, expires_at, malformed_control

_SIGNATURE_KEYS = frozenset({"task", "args", "kwargs", "immutable", "options"})
_OPTION_NAMES = (
    "countdown",
    "priority",
    "max_retries",
    "time_limit",
    "queue",
    "routing_key",
    "concurrency_key",
    "concurrency_limit",
)
"""The call options a canvas node takes, as they are shown back (``expires`` apart: stored as epoch seconds)."""
_OPTION_KEYS = frozenset({*_OPTION_NAMES, "expires"})


class _Budget:
    def __init__(self, max_nodes: int, now: float) -> None:
        self.left = max_nodes
        self.now = now  # when the canvas was submitted: ``expires`` in seconds count from it

    def spend(self, where: str) -> None:
        self.left -= 1
        if self.left < 0:
            raise InvalidCanvas(f"{where}: the canvas has more than {MAX_NODES} nodes")


def canvas_from_json(
    value: Any, *, now: float | None = None, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES
) -> Canvas:
    """The domain canvas for an HTTP canvas; raises :class:`InvalidCanvas` naming the bad node. ``now``
    (the engine's clock; the system's if None) anchors every ``expires`` given in seconds."""
    return _parse(value, "canvas", 1, max_depth, _Budget(max_nodes, time.time() if now is None else now))


def _parse(value: Any, where: str, depth: int, max_depth: int, budget: _Budget) -> Canvas:
    if depth > max_depth:
        raise InvalidCanvas(f"{where}: the canvas nests deeper than {max_depth} levels")
    budget.spend(where)
    if not isinstance(value, dict):
        raise InvalidCanvas(f"{where}: expected an object with one of task, chain, group or chord")
    kinds = [key for key in ("task", "chain", "group", "chord") if key in value]
    if len(kinds) != 1:
        raise InvalidCanvas(f"{where}: expected exactly one of task, chain, group or chord, got {sorted(value)}")
    kind = kinds[0]
    if kind == "task":
        return _signature(value, where, budget.now)
    if len(value) != 1:
        raise InvalidCanvas(f"{where}: a {kind} node takes no other keys, got {sorted(value)}")
    if kind == "chord":
        spec = value["chord"]
        if not isinstance(spec, dict) or set(spec) != {"header", "body"}:
            raise InvalidCanvas(f'{where}.chord: expected {{"header": [...], "body": {{...}}}}')
        header = _members(spec["header"], f"{where}.chord.header", depth, max_depth, budget)
        body = _parse(spec["body"], f"{where}.chord.body", depth + 1, max_depth, budget)
        return Chord(header=header, body=body)
    members = _members(value[kind], f"{where}.{kind}", depth, max_depth, budget)
    if kind == "group":
        return Group(members=members)
    if not members:
        raise InvalidCanvas(f"{where}.chain: a chain needs at least one step")
    return chain_of(members) if len(members) > 1 else Chain(steps=members)


def _members(value: Any, where: str, depth: int, max_depth: int, budget: _Budget) -> list[Canvas]:
    if not isinstance(value, list):
        raise InvalidCanvas(f"{where}: expected a list")
    return [_parse(item, f"{where}[{index}]", depth + 1, max_depth, budget) for index, item in enumerate(value)]


def _signature(value: dict[str, Any], where: str, now: float) -> Signature:
    unknown = set(value) - _SIGNATURE_KEYS
    if unknown:
        raise InvalidCanvas(f"{where}: unknown key(s) {sorted(unknown)}")
    task = value["task"]
    if not isinstance(task, str) or not task or len(task) > 200:
        raise InvalidCanvas(f"{where}.task: expected a task name (a non-empty string of at most 200 characters)")
    args = value.get("args", [])
    kwargs = value.get("kwargs", {})
    immutable = value.get("immutable", False)
    options = value.get("options", {})
    if not isinstance(args, list):
        raise InvalidCanvas(f"{where}.args: expected a list")
    if not isinstance(kwargs, dict):
        raise InvalidCanvas(f"{where}.kwargs: expected an object")
    if not isinstance(immutable, bool):
        raise InvalidCanvas(f"{where}.immutable: expected true or false")
    if not isinstance(options, dict):
        raise InvalidCanvas(f"{where}.options: expected an object with only {sorted(_OPTION_KEYS)}")
    try:
        checked = canvas_options(options)  # exactly as POST /jobs checks its options
    except msgspec.ValidationError as exc:
        detail, _, at = str(exc).rpartition(" - at `$")
        if not detail:
            detail, at = str(exc), ""
        control = malformed_control(at.rstrip("`").removeprefix("."), detail)
        if control is not None:
            raise InvalidCallOption(f"{where}.options{at.rstrip('`')}: {control}") from None
        raise InvalidCanvas(f"{where}.options{at.rstrip('`')}: {detail}") from None
    try:
        ensure_json(args, f"{where}.args")
        ensure_json(kwargs, f"{where}.kwargs")
    except TypeError as exc:
        raise InvalidCanvas(str(exc)) from None
    return Signature(
        task=task,
        args=args,
        kwargs=kwargs,
        immutable=immutable,
        countdown=checked.countdown,
        expires=expires_at(checked.expires, now),
        priority=checked.priority,
        max_retries=checked.max_retries,
        time_limit=checked.time_limit,
        queue=checked.queue,
        routing_key=checked.routing_key,
        concurrency_key=checked.concurrency_key,
        concurrency_limit=checked.concurrency_limit,
    )


def canvas_to_json(canvas: Canvas) -> dict[str, Any]:
    """The HTTP form of a stored canvas (the inverse of :func:`canvas_from_json`)."""
    if isinstance(canvas, Signature):
        node: dict[str, Any] = {"task": canvas.task, "args": canvas.args, "kwargs": canvas.kwargs}
        if canvas.immutable:
            node["immutable"] = True
        names = _OPTION_NAMES
        options = {name: getattr(canvas, name) for name in names}
        options = {name: value for name, value in options.items() if value is not None}
        if canvas.expires is not None:  # stored as epoch seconds: shown as the time it is
            options["expires"] = _iso(canvas.expires)
        if options:
            node["options"] = options
        return node
    if isinstance(canvas, Chain):
        return {"chain": [canvas_to_json(step) for step in canvas.steps]}
    if isinstance(canvas, Group):
        return {"group": [canvas_to_json(member) for member in canvas.members]}
    return {"chord": {"header": [canvas_to_json(m) for m in canvas.header], "body": canvas_to_json(canvas.body)}}


def _iso(timestamp: float) -> str | float:
    try:
        return datetime.fromtimestamp(timestamp, UTC).isoformat()
    except (OverflowError, OSError, ValueError):  # a time no datetime can hold
        return timestamp
