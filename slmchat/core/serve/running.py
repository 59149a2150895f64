"""The server's listening socket and the server itself, run in the foreground (the CLI) or on a
thread of its own (the window, whose GUI thread must never wait for a request).

The socket is bound before the server starts, so a port already taken is refused in a sentence
at once, and port 0's choice is known. uvicorn imports its event loop, HTTP protocol and
lifespan by name at start; they are chosen here, not left to "auto", so the PyInstaller bundle
carries exactly those (`STRING_IMPORTED`, listed in packaging/slmchat.spec) and `self_check`
proves it in the bundle's self-test.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import urllib.request

import uvicorn
from starlette.applications import Starlette

from slmchat.core.errors import SlmchatError

LOOPBACK = "127.0.0.1"
ANY_ADDRESS = "0.0.0.0"
# uvicorn's choices, each imported by name when the server starts (uvicorn/config.py's tables).
_CHOICES = {"loop": "asyncio", "http": "h11", "ws": "none", "lifespan": "off"}
STRING_IMPORTED = ("uvicorn.loops.asyncio", "uvicorn.protocols.http.h11_impl", "uvicorn.lifespan.off")


def listening_socket(host: str, port: int, hint: str = "Choose another port.") -> socket.socket:
    """A socket listening on `host`:`port`; SlmchatError (ending with `hint`) when it cannot."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host.strip("[]")).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name: IPv4
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise SlmchatError(f"Cannot listen on {host} port {port} ({error.strerror}). {hint}") from None
    sock.listen(128)
    return sock


def address(sock: socket.socket) -> str:
    """The API's base address, as a client would write it."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def server(app: Starlette) -> uvicorn.Server:
    """A quiet uvicorn server for `app` (no access log, no server header)."""
    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=2, server_header=False, **_CHOICES)
    return uvicorn.Server(config)


class BackgroundServer:
    """`app` served on `sock` from a thread of its own, until `stop`."""

    def __init__(self, app: Starlette, sock: socket.socket) -> None:
        self.sock = sock
        self.address = address(sock)
        self._server = server(app)
        self._thread = threading.Thread(target=self._run, name="slmchat-api", daemon=True)  # no signals off main
        self._thread.start()

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self.sock])
        finally:
            self.sock.close()

    def stop(self, wait_s: float = 5.0) -> None:
        """Stop listening and answering; returns once the port is closed (at most `wait_s`)."""
        self._server.should_exit = True
        self._thread.join(wait_s)


def self_check() -> str:
    """Serve an empty model list on a free loopback port and ask for it, as a client would: the
    web server's parts (the ones uvicorn imports by name included) are all there. Raises when not."""
    from slmchat.core.serve.app import build_app
    from slmchat.core.serve.hosted import HostedModels

    models = HostedModels(in_use=lambda _using: None, gone=lambda _engine: None,
                          answered=lambda _request, _text, _stats: None)
    running = BackgroundServer(build_app(models), listening_socket(LOOPBACK, 0))
    try:
        with urllib.request.urlopen(f"{running.address}/models", timeout=10) as answer:
            listed = json.load(answer)
    finally:
        running.stop()
        models.close()
    if listed != {"object": "list", "data": []}:
        raise RuntimeError(f"the API answered {listed!r}")
    return f"ok ({', '.join(STRING_IMPORTED)})"
