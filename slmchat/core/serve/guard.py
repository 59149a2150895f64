"""Who may use the server: every request carries the API key when there is one; without one
(loopback only), a request must name this computer as its host and come from no web page of
another site, so a page in the user's browser cannot use the models behind their back (by a
cross-site request or DNS rebinding)."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from slmchat.core.serve.api_error import ApiError


def is_loopback(host: str | None) -> bool:
    """`localhost`, or an address of this computer's loopback (127.0.0.0/8, ::1)."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:  # a malformed address names no host
        return None


class Guard:
    """ASGI middleware: a 401 without the right `Authorization: Bearer <key>` when `api_key` is
    set; without a key, a 403 for a foreign Host or Origin header."""

    def __init__(self, app: ASGIApp, *, api_key: str | None) -> None:
        self._app = app
        self._expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal({name.lower(): value for name, value in scope["headers"]})
            if refusal is not None:
                await JSONResponse(refusal.body(), refusal.status, refusal.headers)(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _refusal(self, headers: dict[bytes, bytes]) -> ApiError | None:
        if self._expected is not None:
            given = headers.get(b"authorization", b"")
            if hmac.compare_digest(given, self._expected):
                return None
            return ApiError(401, "This server needs its API key: send it as \"Authorization: Bearer <key>\".",
                            code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
        host = _hostname("//" + headers.get(b"host", b"").decode("latin-1"))
        origin = headers.get(b"origin")
        if not is_loopback(host) or (origin is not None and not is_loopback(_hostname(origin.decode("latin-1")))):
            return ApiError(403, "This server answers programs on this computer only, not web pages "
                            "of other sites. Start it with --api-key to let others in.", code="forbidden")
        return None
