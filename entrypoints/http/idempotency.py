"""The ``Idempotency-Key`` header of ``POST /jobs`` and ``POST /workflows``: read, checked, and turned with the
request's body into the service's :class:`~application.idempotency.Idempotency`.

Two requests are the same request when they go to the same route with the same body once decoded: the
fingerprint is a SHA-256 of the route and the body's canonical JSON (keys sorted, defaults filled in), so
neither the order of keys nor spacing makes a repeat a different request.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter

from application.idempotency import MAX_KEY_LENGTH, Idempotency, check_idempotency_key
from domain.errors import InvalidIdempotencyKey
from entrypoints.http.openapi import optional_string

HEADER = "Idempotency-Key"
KEY_PATTERN = r"^[\x20-\x2b\x2d-\x7e]*[\x21-\x2b\x2d-\x7e][\x20-\x2b\x2d-\x7e]*$"
"""What :func:`~application.idempotency.check_idempotency_key` accepts, for the document only (a key that
does not match is refused with a 422 that says why, not Litestar's 400): printable ASCII but the comma, not
blank."""

KeyHeader = Annotated[
    str | None,
    HeaderParameter(
        name=HEADER,
        required=False,
        description=(
            f"1 to {MAX_KEY_LENGTH} printable ASCII characters but the comma, naming this submission: the same "
            "key with the same body again returns what the first request created (200), with another body is a "
            "409, for as long as what it created is kept (GEEKBLOG_RESULT_TTL); malformed or given twice, a 422"
        ),
        schema_extra=optional_string(pattern=KEY_PATTERN, max_length=MAX_KEY_LENGTH),
    ),
]
"""The header as a handler parameter (for the OpenAPI document; the value is read by :func:`idempotency`)."""

CONFLICT = "The Idempotency-Key was used for a different request (another body or route) whose job or workflow is kept"


def repeated(data_container: Any, what: str) -> ResponseSpec:
    """The ``200`` of a repeated keyed submission: what the first one created, as it is now."""
    return ResponseSpec(
        data_container=data_container,
        description=f"The Idempotency-Key was used before for this same request: the {what} it created, as it is "
        "now (Location names it)",
        generate_examples=False,
    )


def idempotency(request: Request[Any, Any, Any], route: str, body: Any) -> Idempotency | None:
    """The request's key with the fingerprint of ``route`` and its decoded ``body``; None without the header.
    Raises :class:`InvalidIdempotencyKey` (a 422) for a key given more than once or malformed."""
    values = request.headers.getall(HEADER, [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidIdempotencyKey(f"the {HEADER} header is given {len(values)} times: one key is given once")
    key = check_idempotency_key(values[0])
    digest = hashlib.sha256(f"{route}\n".encode())
    digest.update(msgspec.json.encode(body, order="sorted"))
    return Idempotency(key=key, fingerprint=digest.hexdigest())
