"""A request's JSON body, read within a size limit: a huge body is refused by its declared size
before any of it is read, and one without a declared size is cut off at the limit."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from slmchat.core.serve.api_error import ApiError, invalid

MAX_BODY_BYTES = 8 * 1024 * 1024  # far more than any small model's context holds as text


def _too_large(limit: int) -> ApiError:
    # The unread rest of the body is never wanted: the connection closes after the answer.
    return ApiError(413, f"The request body is larger than this server accepts ({limit // (1024 * 1024)} MB).",
                    code="request_too_large", headers={"Connection": "close"})


async def read_json(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The body as a JSON object, or a 413 (too large) or 400 (not a JSON object)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise invalid("The Content-Length header is not a number.")
        if int(declared) > limit:
            raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, or nested beyond reason
        raise invalid("The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    return body
