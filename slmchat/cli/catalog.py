"""`slmchat-cli catalog refresh`: a maintainer's check of every catalog pin against the hub.

Online: for each downloadable file, is it still at its pinned commit with its size and sha256,
and has the repo renamed, re-uploaded or deleted it since? Prints one line per file; with
`--write`, rewrites the pins (new commits, re-uploads whose header is still the catalog's model,
files that had no pin) into the catalog file. Exits 1 when a user's Download of some file would
fail, so a release check can run it.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from slmchat.cli.terminal import for_terminal
from slmchat.core.errors import SlmchatError
from slmchat.core.models import catalog_refresh
from slmchat.core.models.catalog import CatalogError, default_path, parse_catalog
from slmchat.core.models.hub import Hub
from slmchat.core.models.library import ModelLibrary
from slmchat.paths import Paths

TOKEN_ENV = "HF_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("catalog", help="maintainers: check the model catalog against Hugging Face")
    commands = group.add_subparsers(dest="catalog_command", metavar="COMMAND")
    commands.required = True
    refresh = commands.add_parser(
        "refresh",
        help="check every pinned file (commit, size, sha256) on the hub; --write rewrites the pins",
        description=f"Needs the internet. For gated repos, put your Hugging Face access token in {TOKEN_ENV}.",
    )
    refresh.add_argument("--catalog", metavar="PATH", type=Path, help="the catalog file (default: the one slmchat ships)")
    refresh.add_argument("--write", action="store_true", help="rewrite the pins in the catalog file (else report only)")
    refresh.set_defaults(func=_refresh)


def _refresh(args: argparse.Namespace, paths: Paths) -> int:
    path: Path = args.catalog or default_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"The model list {path} cannot be read: {exc}") from exc
    parse_catalog(raw)  # refuse a damaged catalog before asking the hub anything
    hub = Hub(ModelLibrary(paths), token=os.environ.get(TOKEN_ENV) or None)
    print(f"Checking {catalog_refresh.document_header(raw)} against {hub.endpoint}:")
    checks = catalog_refresh.check_catalog(raw, hub)
    for check in checks:
        flag = ("PROBLEM" if check.status.problem else "UPDATE" if check.new_pin
                else "ok" if check.status is catalog_refresh.Status.OK else "NOTE")
        print(for_terminal(f"  {flag:<8}{check.entry_id} {check.quant}: {check.status.value}: {check.message}"))
    problems = [c for c in checks if c.status.problem]
    updates = [c for c in checks if c.new_pin is not None]
    if args.write and updates:
        written = catalog_refresh.apply(raw, checks)
        _write_validated(path, raw)
        print(f"Wrote {written} new pin(s) to {path}.")
    elif updates:
        print(f"{len(updates)} pin(s) can be updated: run again with --write to rewrite {path}.")
    print(f"{len(problems)} problem(s)." if problems else "No problems.")
    return 1 if problems else 0


def _write_validated(path: Path, raw: dict) -> None:
    """Write the catalog only if it still validates, through a temporary file (never half-written)."""
    try:
        parse_catalog(raw)
    except SlmchatError as error:  # a bug in the rewrite: keep the file as it was
        raise CatalogError(f"The rewritten model list would not load, so {path} was left unchanged: {error}") from error
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(raw, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
