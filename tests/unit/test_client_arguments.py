"""The address the client commands talk to without ``--url``: ``GEEKBLOG_URL``, else where ``serve`` listens."""

from __future__ import annotations

import pytest

from entrypoints.client.arguments import default_url


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "http://127.0.0.1:8000"),
        ({"GEEKBLOG_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"GEEKBLOG_HOST": "10.0.0.5", "GEEKBLOG_PORT": "9000"}, "http://10.0.0.5:9000"),
        ({"GEEKBLOG_HOST": "0.0.0.0"}, "http://127.0.0.1:8000"),
        ({"GEEKBLOG_HOST": "::"}, "http://[::1]:8000"),
        ({"GEEKBLOG_HOST": "fe80::1", "GEEKBLOG_PORT": "81"}, "http://[fe80::1]:81"),
        ({"GEEKBLOG_URL": "https://tasks.example", "GEEKBLOG_PORT": "9000"}, "https://tasks.example"),
    ],
)
def test_default_url(environ: dict[str, str], expected: str) -> None:
    assert default_url(environ) == expected
