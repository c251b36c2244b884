"""The version of GeekBlog Tasks, in one place: read from the installed distribution, whose version is
``pyproject.toml``'s. The HTTP API (its OpenAPI document) and the client's ``User-Agent`` import it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Final

DISTRIBUTION: Final = "geekblog-tasks"  # [project] name in pyproject.toml


def installed_version() -> str:
    """The installed distribution's version; ``0+unknown`` when the code runs from a checkout that was never
    installed (``make install`` installs it, editable)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


VERSION: Final = installed_version()
