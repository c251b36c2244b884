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

import copy
import uuid
from collections.abc import Awaitable, Iterable, Iterator
from typing import Any

import msgspec

from domain import canvas as model
from domain.json_values import ensure_json
from entrypoints.compat import binding
from entrypoints.compat.app import current_app
from entrypoints.compat.options import call_options, check_options
from entrypoints.compat.results import AsyncResult


class ImproperlyConfigured(Exception):
    """Celery's error for a canvas that cannot be applied (an empty chain as a replacement)."""


class NotRegistered(KeyError):
    """Celery's error for calling a signature whose task is not registered in this process."""


class Signature(dict[str, Any]):
    """A task call to make later: name, args, kwargs and call options (Celery's ``Signature``)."""

    subtask_kind: str | None = None

    def __init__(
        self,
        task: Any = None,
        args: Iterable[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        type: Any = None,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Any = None,
        **ex: Any,
    ) -> None:
        if isinstance(task, dict):  # Signature(a_dict), as Celery's
            super().__init__(copy.deepcopy(task))
            self.setdefault("options", {})
            return
        name = getattr(task, "name", task)
        merged = {**(options or {}), **ex}
        check_options(merged)
        super().__init__(
            task=name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=merged,
            subtask_type=subtask_type if subtask_type is not None else self.subtask_kind,
            immutable=immutable,
        )

    # -- Celery's attributes -------------------------------------------------------------------
    @property
    def task(self) -> str:
        return str(self["task"])

    name = task

    @property
    def args(self) -> tuple[Any, ...]:
        return tuple(self["args"])

    @args.setter
    def args(self, value: Iterable[Any]) -> None:
        self["args"] = tuple(value)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self["kwargs"])

    @kwargs.setter
    def kwargs(self, value: dict[str, Any]) -> None:
        self["kwargs"] = dict(value)

    @property
    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = self["options"]
        return options

    @property
    def immutable(self) -> bool:
        return bool(self.get("immutable", False))

    @property
    def subtask_type(self) -> str | None:
        return self.get("subtask_type")

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    @id.setter
    def id(self, value: str) -> None:
        self.options["task_id"] = value

    def __repr__(self) -> str:
        return f"{self.task}{'!' if self.immutable else ''}({self.args!r}, {self.kwargs!r})"

    # -- changing it ---------------------------------------------------------------------------
    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        if immutable is not None:
            self.set_immutable(immutable)
        check_options(options)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        self["immutable"] = immutable

    def clone(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **opts: Any) -> Any:
        """A copy with ``args`` prepended and ``kwargs`` merged (ignored when immutable), options updated."""
        copied = self._copy()
        if not copied.immutable:
            if args:
                copied["args"] = (*tuple(args), *copied.args)
            if kwargs:
                copied["kwargs"] = {**copied.kwargs, **kwargs}
        if opts:
            check_options(opts)
            copied.options.update(opts)
        return copied

    partial = clone

    def _copy(self) -> Any:
        """A copy whose changes never reach this one: a plain signature copies its containers (its
        callbacks are not changed through a copy); a canvas copies its whole tree."""
        if self.subtask_type is not None:
            return type(self).from_dict(copy.deepcopy(dict(self)))
        copied = Signature.__new__(Signature)
        dict.update(copied, self)
        copied["kwargs"] = dict(self["kwargs"])
        options = dict(self["options"])
        for key in ("link", "link_error"):
            if isinstance(options.get(key), list):
                options[key] = list(options[key])
        copied["options"] = options
        return copied

    def freeze(self, _id: str | None = None, **_: Any) -> AsyncResult:
        """Give this call its task id now (``_id``, or the one it has, or a new one); its result handle."""
        if _id is not None:
            self.options["task_id"] = _id
        self.options.setdefault("task_id", str(uuid.uuid4()))
        return AsyncResult(self.options["task_id"])

    def link(self, callback: Any) -> Any:
        """Apply ``callback`` with this call's result once it succeeds; returns ``callback``."""
        self.options["link"] = _appended(self.options.get("link"), _signature(callback))
        return callback

    def link_error(self, errback: Any) -> Any:
        """Apply ``errback`` when this call fails (see README for its arguments); returns ``errback``."""
        self.options["link_error"] = _appended(self.options.get("link_error"), _signature(errback))
        return errback

    def on_error(self, errback: Any) -> Signature:
        self.link_error(errback)
        return self

    def __or__(self, other: Any) -> Any:
        other = _signature(other) if isinstance(other, dict) or hasattr(other, "name") else other
        if not isinstance(other, Signature):
            return NotImplemented
        if isinstance(other, _chain):
            return _chain(self, *other.tasks)
        if isinstance(other, group):
            return _chain(self, _unroll(other))
        return _chain(self, other)

    # -- applying it -----------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task's function here, now (Celery's ``sig()``), with the partial arguments."""
        call = self.clone(args, kwargs)
        from entrypoints.compat.tasks import task_named

        task = task_named(call.task)
        if task is None:
            raise NotRegistered(f"no task named {call.task!r} is registered in this process")
        return task(*call.args, **call.kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> Awaitable[AsyncResult] | AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(
        self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Any:
        """Submit this call as one job; partial ``args`` are prepended, ``kwargs`` merged."""
        call = self.clone(args, kwargs, **options) if args or kwargs or options else self
        from entrypoints.compat.tasks import check_time_limits, task_named

        task = task_named(call.task)
        if task is not None:
            check_time_limits(task)
        if current_app.conf.task_always_eager:
            return call.apply()
        spec = call.to_canvas()
        assert isinstance(spec, model.Signature)
        return submit_signature(spec, ignored=bool(spec.ignore_result))

    def apply(self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
        """Run it here and now (Celery's eager ``apply``); an eager result."""
        from entrypoints.compat.eager import apply_canvas

        throw = options.pop("throw", None)
        return apply_canvas(self.clone(args, kwargs, **options).to_canvas(), throw=throw)

    def to_canvas(self) -> model.Canvas:
        if self.subtask_type:
            return Signature.from_dict(dict(self)).to_canvas()
        return model.Signature(task=self.task, args=list(self.args), kwargs=self.kwargs, **self._call_options())

    def _call_options(self) -> dict[str, Any]:
        options = dict(self.options)
        links = [_signature(link).to_canvas() for link in _callbacks(options.pop("link", None))]
        errbacks = [_signature(link).to_canvas() for link in _callbacks(options.pop("link_error", None))]
        return {**call_options(options), "immutable": self.immutable, "link": links, "link_error": errbacks}

    @classmethod
    def from_dict(cls, d: dict[str, Any], app: Any = None) -> Signature:
        """The signature (or chain, group, chord ...) a dict describes, as Celery's ``from_dict``."""
        kind = d.get("subtask_type")
        target = _KINDS.get(kind) if kind else None
        if target is not None and target is not cls:
            return target.from_dict(d)
        if target is None:
            return Signature(d)
        return target._from_dict(d)

    @classmethod
    def _from_dict(cls, d: dict[str, Any]) -> Signature:
        return Signature(d)


def submit_signature(spec: model.Signature, *, ignored: bool = False) -> Any:
    """Store one job for ``spec``; its handle (awaitable on the engine's loop, blocking elsewhere).

    Arguments are checked here, before anything is awaited: a bad call raises at ``.delay()``.
    """
    lineage = _lineage()
    ensure_json(spec.args, f"{spec.task} args")
    ensure_json(spec.kwargs, f"{spec.task} kwargs")
    definition = binding.engine().registry.find(spec.task)
    if definition is not None:
        definition.check_arguments(spec.args, spec.kwargs)
    if spec.id is None:
        spec = msgspec.structs.replace(spec, id=str(uuid.uuid4()))
    published = _publishing(spec, lineage)
    threaded = binding.off_loop()
    if threaded is not None:
        engine, loop = threaded
        job = engine.jobs.submit_from_thread(spec, loop, lineage=lineage)
        published()
        return AsyncResult(job.id, ignored=ignored)

    async def submit(engine: Any) -> AsyncResult:
        job = await engine.jobs.submit(spec, lineage=lineage)
        published()
        return AsyncResult(job.id, ignored=ignored)

    return binding.call(submit)


def _publishing(spec: model.Signature, lineage: Any) -> Any:
    """Send Celery's ``before_task_publish`` now; the returned call sends ``after_task_publish`` once the
    job is committed (nothing is sent, and nothing costs, when no receiver is connected)."""
    from entrypoints.compat import signals

    if not (signals.before_task_publish.receivers or signals.after_task_publish.receivers):
        return _nothing
    headers = {
        "id": spec.id,
        "task": spec.task,
        "root_id": (lineage.root_id if lineage else None) or spec.id,
        "parent_id": lineage.parent_id if lineage else None,
        "eta": spec.eta,
        "expires": spec.expires,
        "retries": 0,
    }
    body = (list(spec.args), dict(spec.kwargs), {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
    routing_key = spec.routing_key or spec.queue or "celery"
    properties = {"correlation_id": spec.id, "priority": spec.priority}
    signals.before_task_publish.send(
        sender=spec.task,
        body=body,
        exchange="",
        routing_key=routing_key,
        headers=headers,
        properties=properties,
        declare=[],
        retry_policy=None,
    )

    def after() -> None:
        signals.after_task_publish.send(
            sender=spec.task, body=body, exchange="", routing_key=routing_key, headers=headers
        )

    return after


def _nothing() -> None:
    return None


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
        tree = model.partial(self._applied(options).to_canvas(), list(args or ()), dict(kwargs or {}))
        model.validate(tree)
        lineage = _lineage()

        async def submit(engine: Any) -> Any:
            workflow = await engine.jobs.submit_canvas(tree, lineage=lineage)
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
        timing = {key: options.pop(key) for key in ("countdown", "eta") if key in options}
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
            workflow = binding.call(lambda engine: engine.jobs.submit_canvas(tree, lineage=lineage))
            for task in lazy:
                binding.call(lambda engine, t=task: jobs.extend_chord(workflow.id, [member(t)], chord_id=chord_id))
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


_KINDS: dict[str, type[Signature]] = {
    "chain": _chain,
    "group": group,
    "chord": chord,
    "xmap": xmap,
    "xstarmap": xstarmap,
    "chunks": chunks,
}


def _signature(value: Any) -> Signature:
    """A signature from a signature, a dict (Celery's JSON form) or a task object (``add`` as ``add.s()``)."""
    if isinstance(value, Signature):
        return value
    if isinstance(value, dict):
        return Signature.from_dict(value)
    if hasattr(value, "s") and hasattr(value, "name"):
        made: Signature = value.s()
        return made
    raise TypeError(f"not a signature, canvas or task: {value!r}")


def _task_name(task: Any) -> str:
    """The name of a task given as a name (as in a signature's JSON form), a task object or a signature."""
    if isinstance(task, str):
        return task
    return getattr(task, "name", None) or _signature(task).task


def _callbacks(value: Any) -> list[Any]:
    """``link=`` / ``link_error=`` as Celery takes them: one signature (a dict) or a list of them."""
    if value is None:
        return []
    if isinstance(value, dict) or hasattr(value, "name"):
        return [value]
    return list(value)


def _appended(existing: Any, callback: Signature) -> list[Any]:
    """Celery's ``append_to_list_option``: a callback equal to one already there is not added twice."""
    callbacks = _callbacks(existing)
    return callbacks if callback in callbacks else [*callbacks, callback]


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


def _lineage() -> Any:
    """Celery's parent and root ids for what the running task (if any) submits."""
    from application.execution import current_job
    from domain.workflow import Lineage
    from entrypoints.compat.eager import innermost_frame

    frame = innermost_frame()
    if frame is not None and frame.request.id is not None:
        request = frame.request
        return Lineage(parent_id=request.id, root_id=request.root_id or request.id)
    context = current_job.get()
    if context is None:
        return None
    job = context.job
    return Lineage(parent_id=job.id, root_id=job.options.root_id or job.id)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """``signature("name", args=(), kwargs=None, **options)``, or a signature from a dict or a signature."""
    if isinstance(varies, dict):
        return varies.clone() if isinstance(varies, Signature) else Signature.from_dict(varies)
    return Signature(varies, *args, **kwargs)


chain = _chain
subtask = signature
maybe_signature = _signature


def add_to_chord(sig: Any, lazy: bool = False) -> Any:
    """Celery's ``self.add_to_chord(sig)``: add ``sig`` to the header of the chord the running task is a
    header member of; the body then waits for it too. Its result handle.

    The member gets a task id derived from the running job and the call's rank, so a job run again
    after a crash adds the same member, not a second one.
    """
    from application.execution import current_job
    from entrypoints.compat.graph import step_result

    if lazy:
        raise TypeError("add_to_chord(lazy=True) is not supported: the member is added and sent at once")
    context = current_job.get()
    job = context.job if context is not None else None
    if job is None or job.workflow_id is None or job.node is None or job.node.rpartition(".")[2] == "b":
        raise ValueError("Current task is not member of any chord")
    rank = getattr(context, "chord_additions", 0)
    context.chord_additions = rank + 1  # type: ignore[union-attr]
    added = _signature(sig).clone()
    if added.subtask_type is None and added.id is None:
        added.options["task_id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"geekblog:{job.id}/add_to_chord/{rank}"))
    canvas = added.to_canvas()
    workflow_id, path = job.workflow_id, job.node.rpartition(".")[0]

    async def extend(engine: Any) -> Any:
        from domain.errors import InvalidCanvas

        try:
            workflow = await engine.jobs.extend_chord(workflow_id, [canvas], path=path)
        except InvalidCanvas as exc:
            raise ValueError(f"Current task is not member of any chord ({exc})") from None
        chord_node = model.node_at(workflow.canvas, path)
        assert isinstance(chord_node, model.Chord)
        return step_result(chord_node.header[-1], workflow_id)

    return binding.call(extend)
