"""Celery's canvas for task code: ``Signature``, ``chain``, ``group``, ``chord``, ``chunks``, ``xmap``, ``xstarmap``.

As in Celery, a signature is a ``dict`` (``task``, ``args``, ``kwargs``, ``options``, ``subtask_type``,
``immutable``), so it round-trips through JSON: a task may receive or return one and
``Signature.from_dict`` rebuilds it. Applying one builds a :mod:`domain.canvas` value and stores it
(a lone job, or a workflow) and returns Celery's result objects (:mod:`entrypoints.compat.graph`).

Celery's rules kept here: partial arguments are prepended (``add.s(2).delay(8)`` calls
``add(8, 2)``); immutable signatures ignore extra arguments; nested groups are flattened; a
one-member group in a chain is that member; a group followed by a task in a chain is a chord.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, cast

from application.idempotency import submission_key
from domain import canvas as model
from domain.workflow import Workflow
from entrypoints.compat import binding
from entrypoints.compat.app import current_app
from entrypoints.compat.options import check_options
from entrypoints.compat.results import AsyncResult
from entrypoints.compat.signature import (
    _KINDS,
    ImproperlyConfigured,
    NotRegistered,
    Signature,
    _callbacks,
    _lineage,
    _signature,
    _task_name,
    add_to_chord,
    submit_signature,
)

__all__ = ["ImproperlyConfigured", "NotRegistered", "Signature", "add_to_chord", "submit_signature"]


class _Composite(Signature):
    """What chains, groups and chords share: their tasks live in ``kwargs["tasks"]``."""

    @property
    def tasks(self) -> list[Signature]:
        tasks: list[Signature] = self["kwargs"]["tasks"]
        return tasks

    @tasks.setter
    def tasks(self, value: list[Signature]) -> None:
        self["kwargs"]["tasks"] = value

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Store the canvas as a workflow, ``args`` going to the calls it starts with; Celery's result."""
        if current_app.conf.task_always_eager:
            return self.apply(args, kwargs, **options)
        from entrypoints.compat.graph import result_of

        check_options(options)
        key = options.pop("idempotency_key", None)  # the submission's (see submit_keyed), not its calls'
        tree = model.partial(self._applied(options).to_canvas(), list(args or ()), dict(kwargs or {}))
        model.validate(tree)
        lineage, keyed = _lineage(), submission_key(key, tree)

        async def submit(engine: Any) -> Any:
            workflow, _ = await engine.jobs.submit_canvas_once(tree, keyed, lineage=lineage)
            return result_of(workflow.canvas, workflow.id)

        return binding.call(submit)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        from entrypoints.compat.eager import apply_canvas

        throw = options.pop("throw", None)
        tree = model.partial(self._applied(options).to_canvas(), list(args or ()), dict(kwargs or {}))
        return apply_canvas(tree, throw=throw)

    def _applied(self, options: dict[str, Any]) -> Any:
        """A copy of this canvas with the call's ``options`` (Celery's ``apply_async(**options)``):
        ``countdown``/``eta`` delay the calls it starts with, ``task_id`` names its final call,
        ``link``/``link_error`` are added as by ``.link()``, the others go to every call that has not
        set them itself."""
        copied: Any = self.clone()
        options = {**copied.options, **options}
        copied["options"] = {}
        for errback in _callbacks(options.pop("link_error", None)):
            copied.link_error(errback)
        for callback in _callbacks(options.pop("link", None)):
            copied.link(callback)
        task_id = options.pop("task_id", None)
        if task_id is not None:
            _final(copied).options["task_id"] = task_id
        timing: dict[str, Any] = {key: options.pop(key) for key in ("countdown", "eta") if key in options}
        for leaf in _leaves(copied):
            for key, value in options.items():
                leaf.options.setdefault(key, value)
        for leaf in _entries(copied):
            leaf.options.update(timing)
        return copied


class _chain(_Composite):
    """``chain(a.s(1), b.s(), c.s())``: each step gets the previous result first."""

    subtask_kind = "chain"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        super().__init__("celery.chain", (), {"tasks": _flatten(tasks)}, options)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Signature:
        chained = cls(*[_signature(task) for task in d["kwargs"]["tasks"]], **d.get("options", {}))
        chained["immutable"] = d.get("immutable", False)
        return chained

    def __or__(self, other: Any) -> Any:
        other = _signature(other) if not isinstance(other, Signature) else other
        if isinstance(other, _chain):
            return _chain(*self.tasks, *other.tasks)
        if isinstance(other, group):
            return _chain(*self.tasks, _unroll(other))
        return _chain(*self.tasks, other)

    def link(self, callback: Any) -> Any:
        if self.tasks:
            return self.tasks[-1].link(callback)
        return super().link(callback)

    def link_error(self, errback: Any) -> Any:
        for task in self.tasks:
            task.link_error(_signature(errback).clone())
        return errback

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult:
        """Ids for every call; the handle of the last one (Celery: a chain's id is its last task's)."""
        for task in self.tasks[:-1]:
            task.freeze()
        if not self.tasks:
            raise ImproperlyConfigured("cannot freeze an empty chain")
        frozen = self.tasks[-1].freeze(_id)
        self.options["task_id"] = frozen.id
        return frozen

    def to_canvas(self) -> model.Canvas:
        steps: list[model.Canvas] = []
        for task in self.tasks:
            node = _unroll(task).to_canvas() if isinstance(task, group) else task.to_canvas()
            if isinstance(node, model.Chain):
                steps.extend(node.steps)
            elif isinstance(node, model.Group) and not node.members and len(self.tasks) > 1:
                continue  # Celery skips an empty group inside a longer chain
            else:
                steps.append(node)
        if not steps:
            raise ImproperlyConfigured("Cannot apply an empty chain")
        return model.chain_of(steps)


class group(_Composite):
    """``group([...])`` or ``group(a, b)``: members run in parallel; results in group order."""

    subtask_kind = "group"

    def __init__(self, *tasks: Any, **options: Any) -> None:
        super().__init__("celery.group", (), {"tasks": _flatten(tasks)}, options)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Signature:
        grouped = cls([_signature(task) for task in d["kwargs"]["tasks"]], **d.get("options", {}))
        grouped["immutable"] = d.get("immutable", False)
        return grouped

    def __or__(self, other: Any) -> Any:
        other = _signature(other) if not isinstance(other, Signature) else other
        if isinstance(other, _chain):
            return _chain(self, *other.tasks)
        return chord(self, other)

    def link(self, callback: Any) -> Any:
        """Celery links a group's callback to its first task, immutable."""
        if self.tasks:
            return self.tasks[0].link(_signature(callback).clone().set(immutable=True))
        return super().link(callback)

    def link_error(self, errback: Any) -> Any:
        for task in self.tasks:
            task.link_error(_signature(errback).clone())
        return errback

    def freeze(self, _id: str | None = None, **_: Any) -> Any:
        from entrypoints.compat.graph import result_of

        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", str(uuid.uuid4()))
        for task in self.tasks:
            task.freeze()
        return result_of(self.to_canvas(), None)

    def to_canvas(self) -> model.Canvas:
        members: list[model.Canvas] = []
        for task in self.tasks:
            node = task.to_canvas()
            if isinstance(node, model.Group):  # Celery flattens a group inside a group
                members.extend(node.members)
            else:
                members.append(node)
        if len(members) == 1 and isinstance(members[0], model.Chain) and isinstance(members[0].steps[-1], model.Group):
            # Celery's special case group(A.s() | group(B.s(), C.s())): its result is the inner group's.
            return members[0]
        return model.Group(members=members, id=self.options.get("task_id"))

    def _applied(self, options: dict[str, Any]) -> Any:
        copied = super()._applied(options)
        copied.options.setdefault("task_id", str(uuid.uuid4()))
        return copied


class chord(_Composite):
    """``chord(header, body)`` or ``chord(header)(body)``: body gets the header's results once all succeed."""

    subtask_kind = "chord"

    def __init__(self, header: Any, body: Any = None, **options: Any) -> None:
        self._lazy: Iterator[Any] | None = None
        if isinstance(header, group):
            tasks = list(header.tasks)
        elif isinstance(header, Signature):
            tasks = [header]
        elif isinstance(header, Iterator):  # a generator: read as the chord is sent (see apply_async)
            tasks = []
            self._lazy = header
        else:  # Celery copies the signatures of a header given as a list
            tasks = [task.clone() for task in _flatten((header,))]
        super().__init__("celery.chord", (), {"header": tasks, "body": body, "kwargs": {}}, options)

    def _read_all(self) -> None:
        """Read the rest of a generator header into :attr:`tasks`."""
        lazy, self._lazy = self._lazy, None
        if lazy is not None:
            self["kwargs"]["header"].extend(_signature(task).clone() for task in lazy)

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """As Celery, a header given as a generator is sent as it is read: the chord is stored with the
        members read so far and an open header, each later member joins it as the generator yields it
        (its job may start at once), and the body runs once the generator is exhausted and all succeeded.
        A process that dies while reading it leaves the chord open (revoke its workflow)."""
        if self._lazy is None or current_app.conf.task_always_eager or set(options) - {"task_id"}:
            self._read_all()
            return super().apply_async(args, kwargs, **options)
        from entrypoints.compat.graph import result_of

        lazy, self._lazy = self._lazy, None
        call_args, call_kwargs = list(args or ()), dict(kwargs or {})
        chord_id = str(uuid.uuid4())
        body = self._applied(options)._need_body().to_canvas()
        tree = model.Chord(header=[], body=body, id=chord_id, open=True)
        lineage = _lineage()

        def member(task: Any) -> model.Canvas:
            return model.partial(_signature(task).clone().to_canvas(), call_args, call_kwargs)

        if binding.off_loop() is not None:  # read the generator here, not on the engine's loop
            jobs = binding.engine().jobs
            # off the loop, binding.call blocks and returns the workflow itself, not an awaitable
            workflow = cast(Workflow, binding.call(lambda engine: engine.jobs.submit_canvas(tree, lineage=lineage)))

            def extend(task: Any) -> Callable[[object], Coroutine[Any, Any, object]]:
                return lambda _: jobs.extend_chord(workflow.id, [member(task)], chord_id=chord_id)

            for task in lazy:
                binding.call(extend(task))
            binding.call(lambda engine: jobs.extend_chord(workflow.id, [], chord_id=chord_id, close=True))
            return result_of(workflow.canvas, workflow.id)

        async def submit(engine: Any) -> Any:
            workflow = await engine.jobs.submit_canvas(tree, lineage=lineage)
            for task in lazy:
                await engine.jobs.extend_chord(workflow.id, [member(task)], chord_id=chord_id)
            await engine.jobs.extend_chord(workflow.id, [], chord_id=chord_id, close=True)
            return result_of(workflow.canvas, workflow.id)

        return binding.call(submit)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Signature:
        kwargs = d["kwargs"]
        body = kwargs.get("body")
        made = cls([_signature(task) for task in kwargs["header"]], _signature(body) if body else None)
        made.options.update(d.get("options", {}))
        return made

    @property
    def tasks(self) -> list[Signature]:
        self._read_all()
        tasks: list[Signature] = self["kwargs"]["header"]
        return tasks

    @tasks.setter
    def tasks(self, value: list[Signature]) -> None:
        self._lazy = None
        self["kwargs"]["header"] = value

    @property
    def header(self) -> group:
        return group(self.tasks)

    @property
    def body(self) -> Any:
        return self["kwargs"]["body"]

    @body.setter
    def body(self, value: Any) -> None:
        self["kwargs"]["body"] = value

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(body)``: apply the chord with that body."""
        if body is not None:
            made = chord(self.tasks, body, **self.options)
            return made.apply_async((), {}, **options)
        return self.apply_async((), {}, **options)

    def __or__(self, other: Any) -> Any:
        other = _signature(other) if not isinstance(other, Signature) else other
        if isinstance(other, _chain):
            return _chain(self, *other.tasks)
        return _chain(self, other)

    def link(self, callback: Any) -> Any:
        return self._need_body().link(callback)

    def link_error(self, errback: Any) -> Any:
        errback = _signature(errback)
        if current_app.conf.task_allow_error_cb_on_chord_header:
            for task in self.tasks:
                task.link_error(errback.clone().set(immutable=True))
        return self._need_body().link_error(errback)

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult:
        for task in self.tasks:
            task.freeze()
        return self._need_body().freeze(_id)

    @property
    def id(self) -> str | None:
        return self.body.id if self.body is not None else None

    @id.setter
    def id(self, value: str) -> None:
        self._need_body().id = value

    def _need_body(self) -> Signature:
        if self.body is None:
            raise TypeError("a chord needs a body: chord(header)(body) or chord(header, body)")
        body: Signature = _signature(self.body)
        self.body = body
        return body

    def to_canvas(self) -> model.Chord:
        header: list[model.Canvas] = []
        for task in self.tasks:
            node = task.to_canvas()
            if isinstance(node, model.Group):  # a group in a chord header is flattened into it
                header.extend(node.members)
            else:
                header.append(node)
        return model.Chord(header=header, body=self._need_body().to_canvas(), id=self.options.get("group_id"))

    def _applied(self, options: dict[str, Any]) -> Any:
        body = options.pop("body", None)
        made = chord(self.tasks, body, **self.options) if body is not None else self
        return _Composite._applied(made, options)


class xmap(Signature):
    """``task.map(it)``: one job calling ``task`` on each item of ``it`` in turn; the list of results."""

    subtask_kind = "xmap"

    def __init__(self, task: Any, it: Iterable[Any], **options: Any) -> None:
        name = _task_name(task)
        super().__init__(f"celery.{self.subtask_kind.lstrip('x')}", (), {"task": name, "it": list(it)}, options)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Signature:
        return cls(d["kwargs"]["task"], d["kwargs"]["it"], **d.get("options", {}))

    def to_canvas(self) -> model.Canvas:
        return model.Signature(task=self.task, args=[], kwargs=self.kwargs, **self._call_options())


class xstarmap(xmap):
    """``task.starmap(it)``: one job calling ``task(*item)`` for each item; the list of results."""

    subtask_kind = "xstarmap"


class chunks(Signature):
    """``task.chunks(it, n)``: ``it`` in parts of ``n`` items, each part one ``starmap`` job, run as a group."""

    subtask_kind = "chunks"

    def __init__(self, task: Any, it: Iterable[Any], n: int, **options: Any) -> None:
        name = _task_name(task)
        super().__init__("celery.chunks", (), {"task": name, "it": [list(item) for item in it], "n": n}, options)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Signature:
        kwargs = d["kwargs"]
        return cls(kwargs["task"], kwargs["it"], kwargs["n"], **d.get("options", {}))

    def group(self) -> group:
        items, size, task = self.kwargs["it"], int(self.kwargs["n"]), self.kwargs["task"]
        if size < 1:
            raise ValueError("chunks need a size of at least 1")
        return group(xstarmap(task, items[start : start + size]) for start in range(0, len(items), size))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        return self.group().apply_async(args, kwargs, **options)

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        return self.group().apply(args, kwargs, **options)

    def to_canvas(self) -> model.Canvas:
        return self.group().to_canvas()


_KINDS.update(
    {
        "chain": _chain,
        "group": group,
        "chord": chord,
        "xmap": xmap,
        "xstarmap": xstarmap,
        "chunks": chunks,
    }
)


def _flatten(tasks: tuple[Any, ...]) -> list[Signature]:
    if len(tasks) == 1 and not isinstance(tasks[0], dict) and not hasattr(tasks[0], "name"):
        tasks = tuple(tasks[0])
    return [_signature(task) for task in tasks]


def _unroll(grouped: group) -> Signature:
    """Celery's one-member group in a chain: that member."""
    return grouped.tasks[0] if len(grouped.tasks) == 1 else grouped


def _leaves(canvas: Signature) -> list[Signature]:
    if isinstance(canvas, chord):
        return [leaf for task in canvas.tasks for leaf in _leaves(task)] + _leaves(canvas._need_body())
    if isinstance(canvas, _Composite):
        return [leaf for task in canvas.tasks for leaf in _leaves(task)]
    if isinstance(canvas, chunks):
        return [canvas]
    return [canvas]


def _entries(canvas: Signature) -> list[Signature]:
    """The calls a canvas starts with: a chain's first, every member of a group or chord header."""
    if isinstance(canvas, _chain):
        return _entries(canvas.tasks[0]) if canvas.tasks else []
    if isinstance(canvas, _Composite):
        return [leaf for task in canvas.tasks for leaf in _entries(task)]
    return [canvas]


def _final(canvas: Signature) -> Signature:
    if isinstance(canvas, _chain):
        return _final(canvas.tasks[-1])
    if isinstance(canvas, chord):
        return _final(canvas._need_body())
    return canvas


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """``signature("name", args=(), kwargs=None, **options)``, or a signature from a dict or a signature."""
    if isinstance(varies, dict):
        return varies.clone() if isinstance(varies, Signature) else Signature.from_dict(varies)
    return Signature(varies, *args, **kwargs)


chain = _chain
subtask = signature
maybe_signature = _signature
