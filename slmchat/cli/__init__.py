"""`slmchat-cli`: the app's core, headless — for scripting, tests and benchmarks.

Each command group lives in its own module exposing `register(subparsers)`; this module only
parses the shared options and turns errors into one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from slmchat import __version__
from slmchat.cli.terminal import for_terminal
from slmchat.core.errors import SlmchatError
from slmchat.paths import HOME_ENV, Paths
from slmchat.logsetup import setup_logging

# Command modules, in the order their commands appear in --help.
COMMAND_MODULES: tuple[str, ...] = ("chat", "history", "models", "tasks", "docs", "catalog", "serve")

EXIT_USER_ERROR = 1
EXIT_BUG = 70
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slmchat-cli", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"slmchat {__version__}")
    parser.add_argument(
        "--data-dir", metavar="DIR", help=f"keep all data under DIR (same as {HOME_ENV}=DIR)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"slmchat.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except KeyboardInterrupt:  # Ctrl+C while the command modules are still importing
        return EXIT_INTERRUPTED


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.data_dir:
        os.environ[HOME_ENV] = args.data_dir
    paths = Paths.default().ensure()
    setup_logging(paths)
    try:
        return int(args.func(args, paths) or 0)
    except SlmchatError as error:
        print(f"slmchat: {for_terminal(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception:  # a bug: keep the traceback in the log, not on the user's terminal
        logging.getLogger("slmchat").exception("unexpected error in slmchat-cli")
        print(f"slmchat: something went wrong; details are in {paths.log_file}", file=sys.stderr)
        return EXIT_BUG
