"""Celery's canvas as plain data: a Signature and the Chain, Group and Chord that combine them.

Canvases are stored and sent over HTTP as JSON, so they are tagged msgspec Structs; the engine
turns a canvas into jobs with :mod:`domain.planner`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from domain.errors import InvalidCallOption, InvalidCanvas, InvalidSchedule
from domain.json_values import INT_MAX, INT_MIN, ensure_json
from domain.queues import check_concurrency, check_queue_name


class Signature(msgspec.Struct, frozen=True, kw_only=True, tag="signature", tag_field="type", omit_defaults=True):
    """A task name with arguments and Celery's call options; ``immutable`` (``.si()``) ignores a parent's result.

    ``id`` is the task id (Celery's ``task_id``), given before submission by ``freeze()`` or
    ``apply_async(task_id=...)``, else assigned when the canvas is stored. ``link`` and
    ``link_error`` are Celery's callbacks: canvases applied when this call succeeds (its result
    prepended to their arguments unless immutable) or fails (see :mod:`domain.callbacks`).
    ``expires`` is an epoch time after which the call is revoked instead of started.
    """

    task: str
    args: list[Any] = msgspec.field(default_factory=list)
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    immutable: bool = False
    countdown: float | None = None
    eta: float | None = None
    priority: int | None = None
    max_retries: int | None = None
    time_limit: float | None = None
    id: str | None = None
    soft_time_limit: float | None = None
    expires: float | None = None
    queue: str | None = None
    routing_key: str | None = None
    headers: dict[str, Any] | None = None
    ignore_result: bool | None = None
    shadow: str | None = None
    link: list[Canvas] = msgspec.field(default_factory=list)
    link_error: list[Canvas] = msgspec.field(default_factory=list)
    properties: dict[str, Any] | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    concurrency_key: str | None = None
    concurrency_limit: int | None = None


class Chain(msgspec.Struct, frozen=True, kw_only=True, tag="chain", tag_field="type"):
    """Steps run one after the other, each getting the previous result as its first argument."""

    steps: list[Canvas]


class Group(msgspec.Struct, frozen=True, kw_only=True, tag="group", tag_field="type", omit_defaults=True):
    """Members run in parallel; the result is their results in member order. ``id`` is Celery's group id."""

    members: list[Canvas]
    id: str | None = None


class Chord(msgspec.Struct, frozen=True, kw_only=True, tag="chord", tag_field="type", omit_defaults=True):
    """A group whose results, in member order, are passed to ``body`` once all succeeded.

    ``id`` is the header's group id (the chord's own id is its body's, as in Celery). While
    ``open``, the header may still grow (Celery's ``add_to_chord``, a header given as a generator):
    the body waits for it to be closed.
    """

    header: list[Canvas]
    body: Canvas
    id: str | None = None
    open: bool = False


Canvas = Signature | Chain | Group | Chord

MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_COUNTDOWN = 10 * 366 * 24 * 3600.0  # ten years
LATEST_ETA = 253_402_300_799.0  # 9999-12-31T23:59:59Z


def check_schedule(signature: Signature) -> None:
    """Refuse a countdown, ETA, expiry or soft time limit the engine cannot represent (negative, NaN,
    over ten years, past 9999), and a priority, ``max_retries`` or time limit it cannot store or honour
    (:class:`InvalidCallOption`): the same rule for a lone job and for every node of a canvas."""
    check_call_options(signature)
    countdown, eta = signature.countdown, signature.eta
    if signature.expires is not None and not 0 <= signature.expires <= LATEST_ETA:
        raise InvalidSchedule(f"{signature.task}: expires must be between 1970 and 9999, got {signature.expires}")
    if signature.soft_time_limit is not None and not 0 < signature.soft_time_limit <= MAX_COUNTDOWN:
        raise InvalidSchedule(
            f"{signature.task}: soft_time_limit must be a positive number of seconds, got {signature.soft_time_limit}"
        )
    if countdown is not None and not 0 <= countdown <= MAX_COUNTDOWN:
        raise InvalidSchedule(
            f"{signature.task}: countdown must be between 0 and {MAX_COUNTDOWN:.0f} s, got {countdown}"
        )
    if eta is not None and not 0 <= eta <= LATEST_ETA:
        raise InvalidSchedule(f"{signature.task}: eta must be between 1970 and 9999, got {eta}")


def check_call_options(signature: Signature) -> None:
    """Refuse a priority or ``max_retries`` outside the 64-bit signed range (``max_retries`` negative), a
    ``time_limit`` that is not a positive number of seconds up to ten years, or a ``queue`` / ``routing_key``
    that is not a queue name (:func:`domain.queues.check_queue_name`)."""
    priority, max_retries, time_limit = signature.priority, signature.max_retries, signature.time_limit
    if priority is not None and (isinstance(priority, bool) or not INT_MIN <= priority <= INT_MAX):
        raise InvalidCallOption(f"{signature.task}: priority must be an integer of 64 bits, got {_short(priority)}")
    if max_retries is not None and (isinstance(max_retries, bool) or not 0 <= max_retries <= INT_MAX):
        raise InvalidCallOption(
            f"{signature.task}: max_retries must be None or an integer from 0 to 2**63 - 1, got {_short(max_retries)}"
        )
    if time_limit is not None and not 0 < time_limit <= MAX_COUNTDOWN:
        raise InvalidCallOption(
            f"{signature.task}: time_limit must be a positive number of seconds up to {MAX_COUNTDOWN:.0f}, "
            f"got {_short(time_limit)}"
        )
    for name in ("queue", "routing_key"):
        value = getattr(signature, name)
        if value is not None:
            try:
                check_queue_name(value, name)
            except (TypeError, ValueError) as exc:
                raise InvalidCallOption(f"{signature.task}: {exc}") from None
    try:
        check_concurrency(signature.concurrency_key, signature.concurrency_limit)
    except (TypeError, ValueError) as exc:
        raise InvalidCallOption(f"{signature.task}: {exc}") from None


def _short(value: object) -> str:
    """``repr(value)``, cut short (an integer of thousands of digits is not repeated in full)."""
    if isinstance(value, int) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def validate(canvas: Canvas, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> int:
    """Check a canvas is well formed and within the limits; return how many task calls it holds."""
    nodes = 0
    leaves = 0
    ids: set[str] = set()
    stack: list[tuple[Canvas, int]] = [(canvas, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > max_depth:
            raise InvalidCanvas(f"canvas nests deeper than {max_depth} levels")
        if nodes > max_nodes:
            raise InvalidCanvas(f"canvas has more than {max_nodes} nodes")
        if isinstance(node, Signature):
            leaves += 1
            if not node.task:
                raise InvalidCanvas("a signature has an empty task name")
            ensure_json(node.args, f"{node.task} args")
            ensure_json(node.kwargs, f"{node.task} kwargs")
            if node.headers is not None:
                ensure_json(node.headers, f"{node.task} headers")
            if node.properties is not None:
                ensure_json(node.properties, f"{node.task} properties")
            check_schedule(node)
            if node.id is not None:
                if node.id in ids:
                    raise InvalidCanvas(f"task id {node.id!r} is used twice in one canvas")
                ids.add(node.id)
            stack.extend((callback, depth + 1) for callback in (*node.link, *node.link_error))
        elif isinstance(node, Chain):
            if not node.steps:
                raise InvalidCanvas("a chain needs at least one step")
            stack.extend((step, depth + 1) for step in node.steps)
        elif isinstance(node, Group):
            stack.extend((member, depth + 1) for member in node.members)
        elif isinstance(node, Chord):
            stack.extend((member, depth + 1) for member in node.header)
            stack.append((node.body, depth + 1))
        else:
            raise InvalidCanvas(f"not a canvas node: {type(node).__name__}")
    return leaves


def children(node: Canvas, path: str) -> Iterator[tuple[str, Canvas]]:
    """The direct children of ``node`` with their paths (``"0.2"``; a chord's body is ``"<path>.b"``)."""
    prefix = f"{path}." if path else ""
    if isinstance(node, Chain):
        for index, step in enumerate(node.steps):
            yield f"{prefix}{index}", step
    elif isinstance(node, Group):
        for index, member in enumerate(node.members):
            yield f"{prefix}{index}", member
    elif isinstance(node, Chord):
        for index, member in enumerate(node.header):
            yield f"{prefix}{index}", member
        yield f"{prefix}b", node.body


def leaves(canvas: Canvas, path: str = "") -> Iterator[tuple[str, Signature]]:
    """Every task call of the canvas with its path, in canvas order."""
    if isinstance(canvas, Signature):
        yield path, canvas
        return
    for child_path, child in children(canvas, path):
        yield from leaves(child, child_path)


def chain_of(steps: list[Canvas]) -> Canvas:
    """A chain of ``steps`` as Celery builds it: a group followed by another step becomes a chord.

    A chain of one step is that step.
    """
    folded: list[Canvas] = []
    for step in steps:
        if folded and isinstance(folded[-1], Group):
            header = folded.pop()
            assert isinstance(header, Group)
            folded.append(Chord(header=header.members, body=step, id=header.id))
        else:
            folded.append(step)
    return folded[0] if len(folded) == 1 else Chain(steps=folded)


def node_at(canvas: Canvas, path: str) -> Canvas:
    """The node at ``path`` (as :func:`children` names paths); KeyError if there is none."""
    node = canvas
    for segment in path.split(".") if path else []:
        if isinstance(node, Chord) and segment == "b":
            node = node.body
            continue
        members = (
            node.steps
            if isinstance(node, Chain)
            else node.members
            if isinstance(node, Group)
            else node.header
            if isinstance(node, Chord)
            else None
        )
        if members is None or not segment.isdigit() or int(segment) >= len(members):
            raise KeyError(f"no node at {path!r}")
        node = members[int(segment)]
    return node


def sibling_leaves(canvas: Canvas, path: str) -> list[str] | None:
    """The paths of the leaf's group (or chord header) when every member is a plain signature; else None.

    Such a leaf, once successful, unblocks nothing until its last sibling succeeds too.
    """
    parent_path, _, last = path.rpartition(".")
    if not path or last == "b":
        return None
    parent = node_at(canvas, parent_path)
    members = parent.members if isinstance(parent, Group) else parent.header if isinstance(parent, Chord) else None
    if members is None or not all(isinstance(member, Signature) for member in members):
        return None
    prefix = f"{parent_path}." if parent_path else ""
    return [f"{prefix}{index}" for index in range(len(members))]


def freeze(canvas: Canvas, new_id: Callable[[], str]) -> Canvas:
    """``canvas`` with an id on every task call and group that has none yet (Celery's ``freeze``).

    Callbacks (``link``/``link_error``) are left as they are: each application of one gets ids then.
    """
    if isinstance(canvas, Signature):
        return canvas if canvas.id is not None else msgspec.structs.replace(canvas, id=new_id())
    if isinstance(canvas, Chain):
        return Chain(steps=[freeze(step, new_id) for step in canvas.steps])
    if isinstance(canvas, Group):
        return Group(members=[freeze(member, new_id) for member in canvas.members], id=canvas.id or new_id())
    return Chord(
        header=[freeze(member, new_id) for member in canvas.header],
        body=freeze(canvas.body, new_id),
        id=canvas.id or new_id(),
        open=canvas.open,
    )


def task_names(canvas: Canvas) -> Iterator[str]:
    """Every task name the canvas may call, its callbacks' included."""
    stack: list[Canvas] = [canvas]
    while stack:
        node = stack.pop()
        if isinstance(node, Signature):
            yield node.task
            stack.extend((*node.link, *node.link_error))
        else:
            stack.extend(child for _, child in children(node, ""))


def first_leaf(canvas: Canvas) -> Signature | None:
    """The task call a canvas starts with (Celery's root of a chain); None for an empty group."""
    node = canvas
    while not isinstance(node, Signature):
        found = next(children(node, ""), None)
        if found is None:
            return None
        node = found[1]
    return node


def partial(canvas: Canvas, args: list[Any], kwargs: dict[str, Any]) -> Canvas:
    """``canvas`` called with extra arguments, as Celery's partials: ``args`` are prepended and
    ``kwargs`` merged (the call's win) on the calls it starts with (a chain's first step, every
    member of a group, every member of a chord header); immutable signatures keep their own."""
    if not args and not kwargs:
        return canvas
    if isinstance(canvas, Signature):
        if canvas.immutable:
            return canvas
        return msgspec.structs.replace(canvas, args=[*args, *canvas.args], kwargs={**canvas.kwargs, **kwargs})
    if isinstance(canvas, Chain):
        return Chain(steps=[partial(canvas.steps[0], args, kwargs), *canvas.steps[1:]])
    if isinstance(canvas, Group):
        return Group(members=[partial(member, args, kwargs) for member in canvas.members], id=canvas.id)
    return msgspec.structs.replace(canvas, header=[partial(member, args, kwargs) for member in canvas.header])


def final_id(canvas: Canvas) -> str | None:
    """The id Celery gives a canvas's result: its last task's (a chain's last step, a chord's body), a
    group's own. The engine stores a workflow under it, so ``AsyncResult(that id)`` finds the
    workflow before its last task exists."""
    node = canvas
    while True:
        if isinstance(node, Chain):
            node = node.steps[-1]
        elif isinstance(node, Chord):
            node = node.body
        else:
            return node.id


def path_of_chord(canvas: Canvas, chord_id: str) -> str | None:
    """The path of the chord whose id is ``chord_id`` (None if there is none)."""
    stack: list[tuple[str, Canvas]] = [("", canvas)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, Chord) and node.id == chord_id:
            return path
        stack.extend(children(node, path))
    return None


def with_header(canvas: Canvas, chord_path: str, added: list[Canvas], *, close: bool) -> Canvas:
    """``canvas`` with ``added`` appended to the header of the chord at ``chord_path`` (closed when
    ``close``); raises :class:`InvalidCanvas` if there is no chord there."""
    node = node_at(canvas, chord_path)
    if not isinstance(node, Chord):
        raise InvalidCanvas(f"no chord at {chord_path!r}")
    grown = Chord(header=[*node.header, *added], body=node.body, id=node.id, open=node.open and not close)
    return _replace_at(canvas, chord_path.split(".") if chord_path else [], grown)


def _replace_at(node: Canvas, segments: list[str], new: Canvas) -> Canvas:
    if not segments:
        return new
    head, rest = segments[0], segments[1:]
    if isinstance(node, Chord) and head == "b":
        return msgspec.structs.replace(node, body=_replace_at(node.body, rest, new))
    index = int(head)
    if isinstance(node, Chain):
        steps = list(node.steps)
        steps[index] = _replace_at(steps[index], rest, new)
        return msgspec.structs.replace(node, steps=steps)
    if isinstance(node, Group):
        members = list(node.members)
        members[index] = _replace_at(members[index], rest, new)
        return msgspec.structs.replace(node, members=members)
    if isinstance(node, Chord):
        header = list(node.header)
        header[index] = _replace_at(header[index], rest, new)
        return msgspec.structs.replace(node, header=header)
    raise InvalidCanvas(f"no node at segment {head!r}")
