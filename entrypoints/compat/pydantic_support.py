"""Celery's ``pydantic=True`` task option: arguments validated into models, models returned as JSON data.

pydantic is optional: it is imported only when a task asks for it, so this module holds what
knows about it, and the rest of the package never imports it.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Protocol

from entrypoints.compat.app import current_app
from entrypoints.compat.canvas import ImproperlyConfigured


class _Model(Protocol):
    """What this module uses of a pydantic ``BaseModel`` (pydantic is imported at run time, untyped)."""

    @classmethod
    def model_validate(cls, obj: Any, *, strict: bool | None = None, context: Any | None = None) -> Any: ...

    def model_dump(self, *, mode: str = "python", **kwargs: Any) -> Any: ...


def pydantic_wrapper(
    func: Callable[..., Any],
    task_name: str,
    *,
    strict: bool = False,
    context: dict[str, Any] | None = None,
    dump_kwargs: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """Celery's ``pydantic=True``: ``func`` wrapped so that each argument annotated with a pydantic
    ``BaseModel`` (or ``Optional`` of one) is validated into that model (``model_validate``, with
    ``strict`` and ``context``) before the call, and a returned model instance of the annotated return
    class is dumped to JSON data (``model_dump(mode="json", **dump_kwargs)``). String annotations
    (``from __future__ import annotations``) are resolved, at decoration or else at the first call.

    pydantic is imported here, when a task asks for it: ImproperlyConfigured if it is not installed.
    """
    try:
        pydantic = importlib.import_module("pydantic")
    except ModuleNotFoundError as exc:
        raise ImproperlyConfigured("You need to install pydantic to use pydantic model serialization.") from exc
    base_model: type[_Model] = pydantic.BaseModel
    validate_context = {**(context or {}), "celery_app": current_app, "celery_task_name": task_name}
    dump = {"mode": "json", **(dump_kwargs or {})}
    signature = inspect.signature(func)
    resolved: list[dict[str, Any] | None] = [_type_hints(func)]

    def annotation(name: str) -> Any:
        hints = resolved[0]
        if hints is None:
            hints = resolved[0] = _type_hints(func)
        if hints is not None and name in hints:
            found = hints[name]
        elif name == "return":
            found = signature.return_annotation
        else:
            found = signature.parameters[name].annotation
        return found

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> inspect.BoundArguments:
        bound = signature.bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            model = annotation(name)
            optional = _optional_of(model)
            if optional is not None and value is not None:  # Optional[Model]: None stays None
                model = optional
            if isinstance(model, type) and issubclass(model, base_model):
                bound.arguments[name] = model.model_validate(value, strict=strict, context=validate_context)
        return bound

    def result(value: Any) -> Any:
        model = annotation("return")
        model = _optional_of(model) or model
        if isinstance(model, type) and isinstance(value, base_model) and isinstance(value, model):
            return value.model_dump(**dump)
        return value

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            bound = arguments(args, kwargs)
            return result(await func(*bound.args, **bound.kwargs))

        return run_async

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        bound = arguments(args, kwargs)
        return result(func(*bound.args, **bound.kwargs))

    return run


def _type_hints(func: Callable[..., Any]) -> dict[str, Any] | None:
    """The function's resolved annotations; None while a string annotation names what does not exist yet."""
    try:
        return typing.get_type_hints(func)
    except (NameError, AttributeError, TypeError):
        return None


def _optional_of(annotation: Any) -> Any:
    """``X`` for ``Optional[X]`` / ``X | None`` (Celery's ``get_optional_arg``), else None."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return None
    members = typing.get_args(annotation)
    if len(members) != 2 or type(None) not in members:
        return None
    return next(member for member in members if member is not type(None))
