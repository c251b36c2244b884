"""The rule that task arguments and results are plain JSON data, checked before anything is stored."""

from __future__ import annotations

import math
from typing import Any

from domain.errors import NotJsonValue

_MAX_DEPTH = 200


def ensure_json(value: Any, what: str) -> None:
    """Raise :class:`NotJsonValue` unless ``value`` is JSON: None, bool, int, float, str, list/tuple, dict[str, ...]."""
    _check(value, what, 0)


def _check(value: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise NotJsonValue(f"{where} nests deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotJsonValue(f"{where} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJsonValue(f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys are strings")
            _check(item, f"{where}[{key!r}]", depth + 1)
        return
    raise NotJsonValue(f"{where} is a {type(value).__name__}, which is not JSON-serializable")
