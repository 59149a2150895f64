"""`slmchat-cli serve`: the library's models for other programs, through an OpenAI-compatible API.

Each `--model` is loaded in its own process before the server starts (a model that cannot be
served is refused in one line), then the address is printed on stdout and the server runs until
Ctrl+C. It listens on this computer's loopback only, unless `--host` names another address:
then every request must carry an API key (`--api-key`, or one generated and printed here).
Nothing asked or answered through the API is stored.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from slmchat.cli.history import positive_int
from slmchat.cli.model_arg import choose_model, library_paths
from slmchat.cli.terminal import for_terminal
from slmchat.core.errors import SlmchatError
from slmchat.core.gguf.check import check_gguf
from slmchat.core.serve.served import DEFAULT_MAX_WAITING, ModelChoice, ServedModels, load_models
from slmchat.core.tasks.capabilities import capabilities
from slmchat.paths import Paths

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="let other programs use models through an OpenAI-compatible API")
    serve.add_argument("--model", action="append", metavar="PATH|ID",
                       help="a GGUF file or a library id: a chat, text or embedding model; repeat it to "
                            "serve several (default: the starter model)")
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"the address to listen on (default: {DEFAULT_HOST}, this computer only); "
                            "any other needs an API key")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT,
                       help=f"the port (default: {DEFAULT_PORT}; 0 picks a free one)")
    serve.add_argument("--api-key", metavar="KEY",
                       help="require \"Authorization: Bearer KEY\" on every request (generated and printed "
                            "when --host is not a loopback address and none is given)")
    serve.add_argument("--threads", type=positive_int, metavar="N",
                       help="CPU threads per model (default: every physical core for prompts; replies "
                            "use the cores other programs leave free)")
    serve.add_argument("--max-queue", type=positive_int, default=DEFAULT_MAX_WAITING, metavar="N",
                       help="requests that may wait for a busy model before others are refused with "
                            f"HTTP 429 (default: {DEFAULT_MAX_WAITING})")
    serve.set_defaults(func=run_serve)


def _choices(given: list[str] | None, paths: Paths) -> list[ModelChoice]:
    """The models to serve and the names clients use: the library id, else the file's name."""
    known = library_paths(paths)
    choices: dict[str, ModelChoice] = {}
    for name in given or [None]:
        path, recorded = choose_model(name, None, paths)
        if not path.is_file():
            raise SlmchatError(f'"{for_terminal(name or str(path))}" is neither a GGUF file nor the id of a '
                               'model in your library. Run "slmchat-cli models" to see the ids.')
        served_as = recorded if recorded in known else Path(path).stem
        if served_as in choices:
            raise SlmchatError(f"Two models would both be served as {for_terminal(served_as)}; give each once.")
        choices[served_as] = ModelChoice(served_as, path, capabilities(check_gguf(path)))
    return list(choices.values())


def run_serve(args: argparse.Namespace, paths: Paths) -> int:
    # Only this command needs the web server: other commands start without loading it.
    from slmchat.core.serve.app import build_app
    from slmchat.core.serve.guard import is_loopback
    from slmchat.core.serve.running import address, listening_socket, server

    key = args.api_key
    if not key and not is_loopback(args.host):
        key = secrets.token_urlsafe(24)
        print(f"API key (send it as \"Authorization: Bearer <key>\"): {key}", flush=True)
    choices = _choices(args.model, paths)
    sock = listening_socket(args.host, args.port, "Choose another with --port, or 0 for any free one.")
    models: ServedModels | None = None
    try:
        models = load_models(choices, n_threads=args.threads, paths=paths, max_waiting=args.max_queue)
        print(f"Serving {', '.join(for_terminal(m.name) for m in models)} at {address(sock)} "
              "(Ctrl+C stops)", flush=True)
        server(build_app(models, api_key=key)).run(sockets=[sock])
    finally:
        sock.close()
        if models is not None:
            models.close()
    print("slmchat: the server has stopped.", file=sys.stderr)
    return 0
