"""Celery's ``Signature``: a task call as a ``dict`` (``task``, ``args``, ``kwargs``, ``options``,
``subtask_type``, ``immutable``), so it round-trips through JSON, and applying one as a lone job.

The canvases built from signatures (``chain``, ``group``, ``chord`` ...) are in
:mod:`entrypoints.compat.canvas`, which registers them for :meth:`Signature.from_dict`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any

import msgspec

from application.idempotency import Idempotency, canvas_fingerprint, check_idempotency_key
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
        from entrypoints.compat.canvas import _chain, _unroll, group

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
        handle: Awaitable[AsyncResult] | AsyncResult = self.apply_async(args, kwargs)
        return handle

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
        key = call.options.get("idempotency_key")
        if key is not None:  # the submission's, not the call's: not part of the job
            call = call._copy()
            del call.options["idempotency_key"]
        spec = call.to_canvas()
        assert isinstance(spec, model.Signature)
        return submit_signature(spec, ignored=bool(spec.ignore_result), idempotency_key=key)

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
        if options.get("idempotency_key") is not None:
            raise TypeError(
                f"{self.task}: idempotency_key names a whole submission: give it to the apply_async of the "
                "canvas, not to one call in it"
            )
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


def submit_signature(spec: model.Signature, *, ignored: bool = False, idempotency_key: Any = None) -> Any:
    """Store one job for ``spec``; its handle (awaitable on the engine's loop, blocking elsewhere).

    Arguments are checked here, before anything is awaited: a bad call raises at ``.delay()``. With
    ``idempotency_key``, see :func:`submit_keyed`.
    """
    if idempotency_key is not None:
        return submit_keyed(spec, idempotency_key, ignored=ignored)
    lineage = _lineage()
    ensure_json(spec.args, f"{spec.task} args")
    ensure_json(spec.kwargs, f"{spec.task} kwargs")
    definition = binding.engine().registry.find(spec.task)
    if definition is not None:
        definition.check_arguments(spec.args, spec.kwargs)
    if spec.id is None and _publish_receivers():  # the publish signals' headers name the id
        spec = msgspec.structs.replace(spec, id=str(uuid.uuid4()))
    published = _publishing(spec, lineage)
    if binding.off_loop() is not None:
        job = binding.bridge().submit(spec, lineage=lineage)
        published()
        return AsyncResult(job.id, ignored=ignored)

    async def submit(engine: Any) -> AsyncResult:
        job = await engine.jobs.submit(spec, lineage=lineage)
        published()
        return AsyncResult(job.id, ignored=ignored)

    return binding.call(submit)


def submit_keyed(spec: model.Signature, key: Any, *, ignored: bool = False) -> Any:
    """``apply_async(idempotency_key=key)``: the first call with ``key`` stores the job with the key, in one
    commit; the same call again (same task, arguments and options but ``expires``) returns the handle of that
    job, for as long as it is kept; another call under the key raises ``IdempotencyKeyReused`` (a ValueError).
    Through the engine's loop from any thread (the key is read before the job is stored). Celery's
    ``after_task_publish`` is sent only by the call that stored the job."""
    idempotency = Idempotency(check_idempotency_key(key), canvas_fingerprint(spec))
    lineage = _lineage()
    ensure_json(spec.args, f"{spec.task} args")
    ensure_json(spec.kwargs, f"{spec.task} kwargs")
    if spec.id is None and _publish_receivers():  # as submit_signature: the publish signals name the id
        spec = msgspec.structs.replace(spec, id=str(uuid.uuid4()))
    published = _publishing(spec, lineage)

    async def submit(engine: Any) -> AsyncResult:
        job, created = await engine.jobs.submit_once(spec, idempotency, lineage=lineage)
        if created:
            published()
        return AsyncResult(job.id, ignored=ignored)

    return binding.call(submit)


def _publish_receivers() -> bool:
    """Whether anything listens to Celery's publish signals (else a submission neither sends them nor
    takes a task id ahead of the engine: a given id costs a read to check it is not in use)."""
    from entrypoints.compat import signals

    return bool(signals.before_task_publish.receivers or signals.after_task_publish.receivers)


def _publishing(spec: model.Signature, lineage: Any) -> Any:
    """Send Celery's ``before_task_publish`` now; the returned call sends ``after_task_publish`` once the
    job is committed (nothing is sent, and nothing costs, when no receiver is connected)."""
    from entrypoints.compat import signals

    if not _publish_receivers():
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


_KINDS: dict[str, type[Signature]] = {}
"""Signature classes by ``subtask_type``, filled in by :mod:`entrypoints.compat.canvas`."""
