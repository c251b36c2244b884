"""Celery's canvas primitives for task code: ``signature``, ``chain``, ``group``, ``chord`` and ``|``.

Each builds a :mod:`domain.canvas` value; applying one stores it as a workflow and returns a handle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

from domain import canvas as model
from domain.json_values import ensure_json
from entrypoints.compat import binding
from entrypoints.compat.results import AsyncResult, GroupResult

_OPTIONS = ("countdown", "eta", "priority", "max_retries", "time_limit")


class CanvasBase:
    """What every canvas element can do: combine with ``|`` and be applied."""

    def to_canvas(self) -> model.Canvas:
        raise NotImplementedError

    def __or__(self, other: CanvasBase) -> CanvasBase:
        if not isinstance(other, CanvasBase):
            return NotImplemented
        if isinstance(self, _Group) and isinstance(other, Signature):
            return _Chord(list(self.tasks), other)
        return _Chain([*_steps(self), *_steps(other)])

    def _handle(self, ident: str) -> AsyncResult:
        return AsyncResult(ident)

    def apply_async(self, *args: Any, **options: Any) -> Awaitable[AsyncResult] | AsyncResult:
        """Store the canvas as a workflow; the handle's ``get()`` gives the canvas's result."""
        tree = self.to_canvas()
        model.validate(tree)
        make_handle = self._handle

        async def submit(engine: Any) -> AsyncResult:
            workflow = await engine.jobs.submit_canvas(tree)
            return make_handle(workflow.id)

        return binding.call(submit)

    def delay(self, *args: Any, **kwargs: Any) -> Awaitable[AsyncResult] | AsyncResult:
        return self.apply_async()


class Signature(CanvasBase):
    """A task call to make later: name, args, kwargs, options; ``immutable`` ignores a parent's result."""

    def __init__(
        self,
        task: str,
        args: Iterable[Any] = (),
        kwargs: dict[str, Any] | None = None,
        immutable: bool = False,
        **options: Any,
    ) -> None:
        self.task = task
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.immutable = immutable
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(f"unsupported signature option(s): {', '.join(sorted(unknown))}")
        self.options = options

    @property
    def name(self) -> str:
        return self.task

    def __repr__(self) -> str:
        return f"{self.task}{'!' if self.immutable else ''}({self.args!r}, {self.kwargs!r})"

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        if immutable is not None:
            self.immutable = immutable
        self.options.update(options)
        return self

    def clone(self, args: Iterable[Any] = (), kwargs: dict[str, Any] | None = None, **options: Any) -> Signature:
        return Signature(
            self.task,
            (*self.args, *args),
            {**self.kwargs, **(kwargs or {})},
            self.immutable,
            **{**self.options, **options},
        )

    def to_canvas(self) -> model.Signature:
        eta = self.options.get("eta")
        return model.Signature(
            task=self.task,
            args=list(self.args),
            kwargs=self.kwargs,
            immutable=self.immutable,
            countdown=self.options.get("countdown"),
            eta=eta.timestamp() if hasattr(eta, "timestamp") else eta,
            priority=self.options.get("priority"),
            max_retries=self.options.get("max_retries"),
            time_limit=self.options.get("time_limit"),
        )

    def apply_async(  # type: ignore[override]
        self, args: Iterable[Any] | None = None, kwargs: dict[str, Any] | None = None, **options: Any
    ) -> Awaitable[AsyncResult] | AsyncResult:
        """Submit this call as one job (extra ``args`` are appended, as Celery's partials do)."""
        call = self.clone(args or (), kwargs, **options)
        spec = call.to_canvas()
        threaded = binding.off_loop()
        if threaded is not None:
            engine, loop = threaded
            return AsyncResult(engine.jobs.submit_from_thread(spec, loop).id)
        ensure_json(spec.args, f"{spec.task} args")
        ensure_json(spec.kwargs, f"{spec.task} kwargs")
        definition = binding.engine().registry.find(spec.task)
        if definition is not None:
            definition.check_arguments(spec.args, spec.kwargs)

        async def submit(engine: Any) -> AsyncResult:
            job = await engine.jobs.submit(spec)
            return AsyncResult(job.id)

        return binding.call(submit)

    def delay(self, *args: Any, **kwargs: Any) -> Awaitable[AsyncResult] | AsyncResult:
        return self.apply_async(args, kwargs)


class _Chain(CanvasBase):
    def __init__(self, tasks: list[CanvasBase]) -> None:
        self.tasks = tasks

    def to_canvas(self) -> model.Canvas:
        return model.chain_of([task.to_canvas() for task in self.tasks])

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks)


class _Group(CanvasBase):
    def __init__(self, tasks: list[CanvasBase]) -> None:
        self.tasks = tasks

    def to_canvas(self) -> model.Group:
        return model.Group(members=[task.to_canvas() for task in self.tasks])

    def _handle(self, ident: str) -> AsyncResult:
        return GroupResult(ident)

    def __repr__(self) -> str:
        return f"group({self.tasks!r})"


class _Chord(CanvasBase):
    def __init__(self, header: list[CanvasBase], body: CanvasBase | None) -> None:
        self.header = header
        self.body = body

    def to_canvas(self) -> model.Chord:
        if self.body is None:
            raise TypeError("a chord needs a body: chord(header)(body) or chord(header, body)")
        return model.Chord(header=[task.to_canvas() for task in self.header], body=self.body.to_canvas())

    def __call__(self, body: CanvasBase | None = None, **options: Any) -> Awaitable[AsyncResult] | AsyncResult:
        """``chord(header)(body)``: apply the chord with that body."""
        return _Chord(self.header, body or self.body).apply_async(**options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _flatten(tasks: tuple[Any, ...]) -> list[CanvasBase]:
    if len(tasks) == 1 and not isinstance(tasks[0], CanvasBase):
        tasks = tuple(tasks[0])
    for task in tasks:
        if not isinstance(task, CanvasBase):
            raise TypeError(f"not a signature or canvas: {task!r}")
    return list(tasks)


def _steps(item: CanvasBase) -> list[CanvasBase]:
    return list(item.tasks) if isinstance(item, _Chain) else [item]


def signature(
    varies: str | Signature,
    args: Iterable[Any] = (),
    kwargs: dict[str, Any] | None = None,
    immutable: bool = False,
    **options: Any,
) -> Signature:
    """``signature("name", args=(), kwargs=None, immutable=False, **options)`` as in Celery."""
    if isinstance(varies, Signature):
        return varies.clone()
    return Signature(varies, args, kwargs, immutable, **options)


def chain(*tasks: Any) -> CanvasBase:
    """``chain(a.s(1), b.s(), c.s())``: each step gets the previous result first."""
    return _Chain(_flatten(tasks))


def group(*tasks: Any) -> _Group:
    """``group([...])`` or ``group(a, b)``: members run in parallel; results in group order."""
    return _Group(_flatten(tasks))


def chord(header: Any, body: CanvasBase | None = None) -> _Chord:
    """``chord(header)(body)`` or ``chord(header, body)``: body gets the header results once all succeed."""
    members = list(header.tasks) if isinstance(header, _Group) else _flatten((header,))
    return _Chord(members, body)
