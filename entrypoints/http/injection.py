"""How a handler receives a service from the container: by its parameter's name, typed by port or service.

``Injected[EventBus]`` is Litestar's ``NamedDependency`` whose value is not validated: the value comes
from the composition root, never from the client, and a port is a ``Protocol`` that Litestar could
only check with ``isinstance`` if it were declared ``@runtime_checkable``. The names are those of
``entrypoints.http.app.services``.
"""

from __future__ import annotations

from typing import TypeAlias, TypeVar

from litestar.di import NamedDependency
from litestar.params import SkipValidation

T = TypeVar("T")

Injected: TypeAlias = NamedDependency[SkipValidation[T]]
