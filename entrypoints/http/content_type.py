"""Request bodies are JSON, and say so: a body under any other content type is refused with 415.

Without it, a JSON body sent as ``text/plain`` (or a form, or with no content type) would be read as
JSON all the same, and a web page could make a browser submit jobs to a service on localhost: such a
cross-site request is a "simple" one, sent without a CORS preflight. A ``Content-Type:
application/json`` request is not, so a browser asks first (and this service grants no CORS).

Only the routes that read a body (a ``data`` parameter) are concerned, and only when a body is sent:
``POST /jobs/{id}/cancel`` or ``POST /projects/{id}/article`` without a body are unchanged. This runs
after routing and authentication (404, 405 and 401 come first) and before the body is read.
"""

from __future__ import annotations

import re
from typing import Any

from litestar import Request
from litestar.exceptions import HTTPException

# application/json and the structured-syntax suffix application/<subtype>+json (RFC 6839)
JSON_MEDIA_TYPE = re.compile(r"application/(?:[a-z0-9!#$&^_.-]+\+)?json")


class UnsupportedMediaType(HTTPException):
    status_code = 415


def sends_a_body(request: Request[Any, Any, Any]) -> bool:
    headers = request.headers
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length", "").strip()
    return length != "" and length.strip("0") != ""


async def require_json_body(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook: a body sent to a route that reads one must be ``application/(*+)json``."""
    if "data" not in request.route_handler.parsed_fn_signature.parameters or not sends_a_body(request):
        return
    media_type, _ = request.content_type
    if JSON_MEDIA_TYPE.fullmatch(media_type):
        return
    sent = f"{media_type!r}" if media_type else "no content type"
    raise UnsupportedMediaType(f"the body must be sent as application/json, not as {sent}")
