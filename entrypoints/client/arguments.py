"""The values ``geekblog``'s client commands take on the command line, checked as argparse types, and the
address they talk to when ``--url`` is not given."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from datetime import datetime

DEFAULT_URL = "http://127.0.0.1:8000"


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def iso_time(text: str) -> str:
    """An ``--eta``: an ISO 8601 time, sent as written (the service reads a time without offset as UTC)."""
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time (2026-01-31T09:00:00Z), got {text!r}") from None
    return text


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def default_url(environ: Mapping[str, str] | None = None) -> str:
    """``GEEKBLOG_URL``, else the address ``geekblog serve`` listens on (``GEEKBLOG_HOST``/``GEEKBLOG_PORT``,
    else 127.0.0.1:8000); a wildcard host (``0.0.0.0``, ``::``) is reached on the loopback."""
    environ = os.environ if environ is None else environ
    url = environ.get("GEEKBLOG_URL")
    if url:
        return url
    host = environ.get("GEEKBLOG_HOST") or "127.0.0.1"
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = environ.get("GEEKBLOG_PORT") or "8000"
    return f"http://{host}:{port}"


def header_value(text: str) -> str:
    """An ``--idempotency-key``: printable ASCII, as an HTTP header carries it (the service checks the rest)."""
    if not text.isascii() or not text.isprintable():
        raise argparse.ArgumentTypeError(f"expected printable ASCII characters, got {text!r}")
    return text


def limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(f"expected 1..500, got {value}")
    return value
