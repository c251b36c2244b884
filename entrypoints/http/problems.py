"""The one table that maps errors to ``application/problem+json`` responses: no traceback ever leaves."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from application.ports.storage import (
    StorageErrorTranslator,
    StorageFull,
    StorageLocked,
    StorageUnavailable,
    no_translation,
)
from domain.errors import (
    Conflict,
    IdempotencyKeyReused,
    IdempotencyKeyTaken,
    InvalidArguments,
    InvalidCallOption,
    InvalidCanvas,
    InvalidIdempotencyKey,
    InvalidSchedule,
    InvalidTransition,
    NotFound,
    NotJsonValue,
    UnknownTask,
)
from entrypoints.http.options import malformed_control

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class Problem(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """RFC 9457 problem details (``errors``: what failed validation, for a 400)."""

    type: str
    title: str
    status: Annotated[int, msgspec.Meta(ge=400, le=599, description="The HTTP status of the response")]
    detail: str
    errors: list[dict[str, Any]] | None = None


def problem(status: int, title: str, detail: str, *, slug: str | None = None, **extra: Any) -> Response[Problem]:
    body = Problem(
        type=f"urn:geekblog:problem:{slug}" if slug else "about:blank",
        title=title,
        status=status,
        detail=detail,
        errors=extra.get("errors"),
    )
    headers = extra.get("headers") or {}
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


# (exception class, status, title, slug): the first matching row answers.
_TABLE: list[tuple[type[BaseException], int, str, str]] = [
    (NotFound, 404, "Not found", "not-found"),
    (UnknownTask, 422, "Unknown task", "unknown-task"),
    (InvalidCanvas, 422, "Invalid canvas", "invalid-canvas"),
    (NotJsonValue, 422, "Not JSON data", "not-json"),
    (InvalidCallOption, 422, "Invalid call option", "invalid-call-option"),
    (InvalidSchedule, 422, "Invalid schedule", "invalid-schedule"),
    (InvalidArguments, 422, "Arguments do not fit the task", "invalid-arguments"),
    (InvalidIdempotencyKey, 422, "Invalid idempotency key", "invalid-idempotency-key"),
    (IdempotencyKeyReused, 409, "Idempotency key used for another request", "idempotency-key-reused"),
    (IdempotencyKeyTaken, 409, "Idempotency key used for another request", "idempotency-key-reused"),
    (InvalidTransition, 409, "Conflict with the job's state", "invalid-transition"),
    (Conflict, 409, "Conflict", "conflict"),
    (StorageUnavailable, 503, "Storage unavailable", "storage-unavailable"),
]


def handle_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    for cls, status, title, slug in _TABLE:
        if isinstance(exc, cls):
            return problem(status, title, str(exc), slug=slug)
    return handle_unexpected(request, exc)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    status = exc.status_code
    detail = exc.detail
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [item for item in exc.extra if isinstance(item, dict)]
        control = _malformed_control(errors)
        if control is not None:
            return problem(422, "Invalid call option", control, slug="invalid-call-option")
        if errors:
            detail = "; ".join(_describe(item) for item in errors)
    title = _TITLES.get(status, "Request refused")
    return problem(status, title, detail or title, errors=errors, headers=exc.headers)


def handle_recursion(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Problem]:
    return problem(400, "Bad request", "the request body nests too deeply", slug="too-deep")


def handle_bad_encoding(request: Request[Any, Any, Any], exc: UnicodeDecodeError) -> Response[Problem]:
    return problem(400, "Bad request", f"the request is not valid UTF-8: {exc.reason}", slug="bad-encoding")


def handle_unexpected(
    request: Request[Any, Any, Any], exc: Exception, translate: StorageErrorTranslator = no_translation
) -> Response[Problem]:
    failure = translate(exc)  # a storage adapter's own error (sqlite3's ...) that stands for a storage failure
    if failure is not None:
        log.warning("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        text = str(failure)
        if isinstance(failure, StorageFull):
            detail = f"the database is full ({text}): nothing was written; free space and try again"
        elif isinstance(failure, StorageLocked):
            detail = f"the database is locked by another process ({text}): nothing was written; try again"
        else:
            detail = f"the database is unavailable ({text}): nothing was written"
        return problem(503, "Storage unavailable", detail, slug="storage-unavailable", headers={"Retry-After": "5"})
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(500, "Internal error", "an unexpected error occurred; it has been logged", slug="internal")


def _malformed_control(errors: list[dict[str, Any]]) -> str | None:
    """The 422 detail when the body's one error is a malformed queue control or ``expires`` in its
    ``options`` (``POST /jobs``): a 422 naming the option, as the domain's checks of those options are."""
    if len(errors) != 1 or errors[0].get("source") != "body":
        return None
    prefix, _, option = str(errors[0].get("key", "")).partition(".")
    if prefix != "options":
        return None
    return malformed_control(option, str(errors[0].get("message", "invalid")))


def _describe(item: dict[str, Any]) -> str:
    key = item.get("key")
    message = item.get("message", "invalid")
    return f"{key}: {message}" if key else str(message)


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    503: "Service unavailable",
}

EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    HTTPException: handle_http_exception,
    NotFound: handle_domain_error,
    UnknownTask: handle_domain_error,
    InvalidCanvas: handle_domain_error,
    NotJsonValue: handle_domain_error,
    InvalidSchedule: handle_domain_error,
    InvalidArguments: handle_domain_error,
    InvalidIdempotencyKey: handle_domain_error,
    IdempotencyKeyReused: handle_domain_error,
    IdempotencyKeyTaken: handle_domain_error,
    InvalidTransition: handle_domain_error,
    Conflict: handle_domain_error,
    StorageUnavailable: handle_domain_error,
    RecursionError: handle_recursion,
    UnicodeDecodeError: handle_bad_encoding,
    Exception: handle_unexpected,
}


def exception_handlers(translate: StorageErrorTranslator) -> dict[type[Exception] | int, Any]:
    """:data:`EXCEPTION_HANDLERS`, with errors the storage adapter lets through read by ``translate``."""

    def handle_unexpected_with(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
        return handle_unexpected(request, exc, translate)

    return {**EXCEPTION_HANDLERS, Exception: handle_unexpected_with}
