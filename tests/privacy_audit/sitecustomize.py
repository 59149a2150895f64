"""An audit hook in every Python process of a privacy test: what each one asked of the network.

tests/test_privacy.py puts this folder first on PYTHONPATH and names a log file in
`SLMCHAT_PRIVACY_AUDIT_LOG`. Python imports `sitecustomize` at start-up in every process that
inherits that environment, so the app, slmchat-cli and the model processes they spawn
(multiprocessing's spawn children are new interpreters) all install the hook before any of our
code runs. Each process first writes a `start` line (pid, parent pid, command line); then the hook
appends one JSON line per socket created, connection, address look-up, datagram, urllib request,
program started, module imported and shared library loaded (which tell what a process really
did, e.g. that a model process loaded llama.cpp). Lines are written with one O_APPEND write each, so
processes writing at once do not mix them.

`SLMCHAT_PRIVACY_AUDIT_INJECT=HOST:PORT` is the test's own misbehaviour, never the app's: every
process then opens a TCP connection to HOST:PORT and looks up the name "localhost" once the hook
is installed, so a test can show that the check reports both, in every process.
"""

from __future__ import annotations

import json
import os
import socket
import sys

LOG_ENV = "SLMCHAT_PRIVACY_AUDIT_LOG"
INJECT_ENV = "SLMCHAT_PRIVACY_AUDIT_INJECT"


def _family(value: int) -> str:
    try:
        return socket.AddressFamily(value).name
    except ValueError:
        return str(value)


def _address(address: object) -> object:
    """A tuple address as a list (JSON); an AF_UNIX path or abstract name as text."""
    if isinstance(address, tuple):
        return list(address)
    if isinstance(address, bytes):
        return address.decode("utf-8", "backslashreplace")
    return address


def _details(event: str, args: tuple) -> dict | None:
    """What is worth keeping of one audit event, or None for events this audit does not watch."""
    if event == "socket.__new__":  # (socket, family, type, proto)
        return {"family": _family(args[1])}
    if event in ("socket.connect", "socket.sendto"):  # (socket, address)
        return {"family": _family(args[0].family), "address": _address(args[1])}
    if event == "socket.getaddrinfo":
        return {"host": _address(args[0]), "port": args[1]}
    if event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        return {"host": _address(args[0])}
    if event == "urllib.Request":  # (url, data, headers, method)
        return {"url": args[0], "method": args[3]}
    if event == "subprocess.Popen":  # (executable, args, cwd, env): no executable means args[0]
        executable, argv = args[0], args[1]
        if executable is None:
            executable = argv if isinstance(argv, (str, bytes, os.PathLike)) else argv[0]
        return {"program": os.fsdecode(executable)}
    if event in ("os.exec", "os.posix_spawn", "os.system"):  # the program (or command) comes first
        return {"program": os.fsdecode(args[0])}
    if event == "import":
        return {"module": args[0]}
    if event == "ctypes.dlopen":
        return {"library": os.fsdecode(args[0]) if args[0] is not None else None}
    return None


def _install(log_path: str) -> None:
    descriptor = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    pid = os.getpid()

    def write(event: str, details: dict) -> None:
        line = json.dumps({"pid": pid, "event": event, **details}, default=repr) + "\n"
        os.write(descriptor, line.encode())

    def hook(event: str, args: tuple) -> None:
        details = _details(event, args)
        if details is not None:
            write(event, details)

    write("start", {"ppid": os.getppid(), "argv": sys.orig_argv})
    sys.addaudithook(hook)


def _misbehave(target: str) -> None:
    """The injected fault: a TCP connection and a name look-up no one asked for."""
    host, port = target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    socket.getaddrinfo("localhost", int(port))


if os.environ.get(LOG_ENV):
    _install(os.environ[LOG_ENV])
    if os.environ.get(INJECT_ENV):
        _misbehave(os.environ[INJECT_ENV])
