"""A small synchronous client of the HTTP API: JSON in and out, problem+json errors as exceptions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

import httpx

from entrypoints.client.errors import ClientError, ServiceUnavailable, StreamBroken, UsageError, WaitTimeout
from entrypoints.client.sse import parse_events
from entrypoints.version import VERSION

USER_AGENT = f"geekblog-cli/{VERSION}"


@dataclass(frozen=True)
class Reply:
    """A successful answer: its status, its JSON body decoded, and the body as the server sent it."""

    status: int
    data: Any
    text: str


class StreamMessage(NamedTuple):
    """One message of an event stream: its ``event:`` name, its JSON ``data:`` decoded, and as sent."""

    event: str
    data: Any
    raw: str


class ApiClient:
    """The service at ``base_url``; sends ``Authorization: Bearer <token>`` when a token is given.

    Every method raises :class:`ClientError` for an error answer, :class:`ServiceUnavailable` when the
    service cannot be reached, and :class:`UsageError` for a URL or token that cannot be used at all.
    """

    def __init__(
        self, base_url: str, token: str | None = None, *, timeout: float = 10.0, stream_timeout: float = 45.0
    ) -> None:
        base_url = base_url.strip().rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"--url must be an http:// or https:// URL, got {base_url!r}")
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if token:
            if not token.isascii() or not token.isprintable():
                raise UsageError("GEEKBLOG_API_TOKEN must be printable ASCII to be sent in an HTTP header")
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url
        self.has_token = bool(token)
        self._timeout = timeout
        self._stream_timeout = stream_timeout
        try:
            self._client = httpx.Client(
                base_url=base_url, headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0))
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageError(f"--url {base_url!r} is not a usable URL: {exc}") from None

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def get(self, path: str, params: dict[str, str | int] | None = None) -> Reply:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, *, headers: dict[str, str] | None = None) -> Reply:
        return self.request("POST", path, body=body, headers=headers)

    def get_text(self, path: str) -> str:
        """The body of a ``GET`` that answers with text (Markdown), not JSON."""
        with self._translate("GET", path):
            response = self._client.get(path, headers={"Accept": "text/markdown, text/plain"})
        if response.is_error:
            raise self._error(response)
        return response.text

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str | int] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request (with ``headers`` besides the client's own); the decoded JSON answer, or an
        exception (see the class)."""
        content = None if body is None else json.dumps(body, allow_nan=False).encode()
        sent = dict(headers or {})
        if content is not None:
            sent["Content-Type"] = "application/json"
        with self._translate(method, path):
            response = self._client.request(method, path, params=params, content=content, headers=sent or None)
        if response.is_error:
            raise self._error(response)
        try:
            data = response.json() if response.content else None
        except ValueError:
            raise ServiceUnavailable(
                f"{self.base_url} answered {method} {path} with {response.status_code} but no JSON body"
            ) from None
        return Reply(status=response.status_code, data=data, text=response.text)

    def events(self, path: str, *, deadline: float | None = None) -> Iterator[StreamMessage]:
        """The messages of the event stream at ``path`` until the server closes it.

        Opening it raises like :meth:`request`; once open, a broken connection or a message that is
        not JSON raises :class:`StreamBroken`, and passing ``deadline`` (a ``time.monotonic()``
        instant) raises :class:`WaitTimeout`.
        """
        read = self._stream_timeout
        if deadline is not None:
            read = max(0.5, min(read, deadline - time.monotonic()))
        timeout = httpx.Timeout(self._timeout, read=read)
        opened = False
        try:
            with self._client.stream("GET", path, headers={"Accept": "text/event-stream"}, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise self._error(response)
                opened = True
                for event, data in parse_events(_until(response.iter_lines(), deadline)):
                    try:
                        decoded = json.loads(data)
                    except ValueError:
                        raise StreamBroken(
                            f"the event stream {path} sent data that is not JSON: {data[:80]!r}"
                        ) from None
                    yield StreamMessage(event=event, data=decoded, raw=data)
        except httpx.HTTPError as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(f"no end of {path} before the deadline") from None
            if opened:
                raise StreamBroken(f"the event stream {path} broke: {_describe(exc)}") from None
            raise self._unavailable("GET", path, exc) from None

    @contextmanager
    def _translate(self, method: str, path: str) -> Iterator[None]:
        try:
            yield
        except httpx.HTTPError as exc:
            raise self._unavailable(method, path, exc) from None

    def _unavailable(self, method: str, path: str, exc: httpx.HTTPError) -> ServiceUnavailable | UsageError:
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return UsageError(f"--url {self.base_url!r} is not a usable URL: {exc}")
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ServiceUnavailable(f"cannot reach the service at {self.base_url}: {_describe(exc)}")
        if isinstance(exc, httpx.TimeoutException):
            return ServiceUnavailable(f"the service at {self.base_url} did not answer {method} {path} in time")
        return ServiceUnavailable(f"{method} {self.base_url}{path} failed: {_describe(exc)}")

    def _error(self, response: httpx.Response) -> ClientError:
        status = response.status_code
        title = response.reason_phrase or "Error"
        detail = ""
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            title = str(body.get("title") or title)
            detail = str(body.get("detail") or "")
        else:
            detail = " ".join(response.text.split())[:200]
        hint = ""
        if status == 401:
            hint = (
                "the token in GEEKBLOG_API_TOKEN was refused"
                if self.has_token
                else "set GEEKBLOG_API_TOKEN to the service's API token"
            )
        return ClientError(status, title, detail, hint=hint)


def _until(lines: Iterable[str], deadline: float | None) -> Iterator[str]:
    for line in lines:
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout("deadline passed")
        yield line


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
