"""`slmchat-cli history`: list, show, search, export and import stored conversations.

Stored text is untrusted (a model's reply, a pasted message): what is shown on a terminal goes
through `for_terminal`; an export written to a file or a pipe keeps every character.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from slmchat.cli.model_arg import able_model, suggested_model
from slmchat.cli.terminal import for_terminal, write_out
from slmchat.core.errors import SlmchatError
from slmchat.core.models.library import ModelLibrary
from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.core.store.export import (
    NotAnExport,
    conversation_markdown,
    export_all,
    export_conversations,
    import_conversations,
)
from slmchat.core.store.store import Store
from slmchat.core.tasks import semantic
from slmchat.core.tasks.capabilities import Capability
from slmchat.paths import Paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("history", help="list, search, show, export and import conversations")
    commands = parser.add_subparsers(dest="history_command", metavar="ACTION")
    commands.required = True

    listing = commands.add_parser("list", help="list conversations, most recent first")
    listing.add_argument("--trash", action="store_true", help="list the trash instead")
    listing.add_argument("--limit", type=positive_int, default=None, metavar="N")
    listing.set_defaults(func=_list)

    show = commands.add_parser("show", help="print a conversation as Markdown")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--tree", action="store_true", help="every branch, not only the shown one")
    show.set_defaults(func=_show)

    search = commands.add_parser("search", help="full-text search over messages and titles (--semantic: by meaning)")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--limit", type=positive_int, default=20, metavar="N")
    search.add_argument("--semantic", action="store_true",
                        help="rank messages by closeness in meaning with an embedding model (indexes new "
                             "messages first); full-text search when no embedding model is installed")
    search.add_argument("--model", metavar="PATH|ID", help="with --semantic: the embedding model "
                        "(default: the first one in your library)")
    search.set_defaults(func=_search)

    export = commands.add_parser("export", help="export a conversation (or --all) as Markdown or JSON")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("id", type=int, nargs="?", metavar="ID")
    which.add_argument("--all", action="store_true", help="every conversation, trash included (JSON)")
    export.add_argument("--format", choices=("md", "json"), default=None,
                        help="md (the default) or json; --all is always json")
    export.add_argument("--tree", action="store_true", help="every branch, not only the shown one")
    export.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE, not stdout")
    export.set_defaults(func=_export)

    importing = commands.add_parser("import", help="import conversations from a JSON export")
    importing.add_argument("file", type=Path, metavar="FILE")
    importing.set_defaults(func=_import)


def positive_int(text: str) -> int:
    """An argparse type: a count of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def open_store(paths: Paths) -> Store:
    """The store, telling the user on stderr when a damaged database was salvaged."""
    store = Store(paths.database)
    if store.recovery is not None:
        print(f"slmchat: {store.recovery.describe()}", file=sys.stderr)
    return store


def _list(args: argparse.Namespace, paths: Paths) -> int:
    with open_store(paths) as store:
        for conversation in store.conversations(trashed=args.trash, limit=args.limit):
            pin = "*" if conversation.pinned else " "
            updated = conversation.updated.strftime("%Y-%m-%d %H:%M")
            title = for_terminal(conversation.title) or "(untitled)"
            print(f"{conversation.id:>6} {pin} {updated}  {title}")
    return 0


def _show(args: argparse.Namespace, paths: Paths) -> int:
    with open_store(paths) as store:
        sys.stdout.write(for_terminal(conversation_markdown(store, args.id, whole_tree=args.tree)))
    return 0


def _search(args: argparse.Namespace, paths: Paths) -> int:
    if args.model is not None and not args.semantic:
        raise SlmchatError("--model chooses the embedding model of --semantic: add --semantic, or leave --model out.")
    if args.semantic:
        model = _embedding_model(args.model, paths)
        if model is not None:
            return _semantic_search(args, model, paths)
        print(f"slmchat: no embedding model is installed, so full-text search is used. To search by meaning, "
              f"get {suggested_model(Capability.EMBED)}.", file=sys.stderr)
    with open_store(paths) as store:
        hits = store.search(args.query, limit=args.limit, marks=("[", "]"))
    for hit in hits:
        where = (
            f"{hit.conversation_id}" if hit.message_id is None else f"{hit.conversation_id}:{hit.message_id}"
        )
        kind = "title" if hit.role is None else "thinking" if hit.in_thinking else hit.role.value
        snippet = " ".join(for_terminal(hit.snippet).split())
        print(f"{where:>12}  {kind:<9} {for_terminal(hit.conversation_title)}: {snippet}")
    return 0 if hits else 1


def _embedding_model(given: str | None, paths: Paths) -> Path | None:
    """The model given (refused in one line when it cannot embed), else the library's first
    embedding model, else None."""
    if given is not None:
        return able_model(given, Capability.EMBED, paths).path
    found = semantic.embedding_model(model.info for model in ModelLibrary(paths).list() if model.info is not None)
    return None if found is None else found.path


def _semantic_search(args: argparse.Namespace, model: Path, paths: Paths) -> int:
    """Embed the messages not indexed yet with this model (kept for next time), then rank all."""
    with open_store(paths) as store, TaskClient(TaskKind.EMBED, model, paths=paths) as embedder:
        added = semantic.index_all(store, embedder)
        if added:
            print(f"slmchat: indexed {added} new message(s) with {for_terminal(embedder.model_name)}", file=sys.stderr)
        hits = semantic.search(store, embedder, args.query, k=args.limit)
    for hit in hits:
        where = f"{hit.conversation_id}:{hit.message_id}"
        snippet = " ".join(for_terminal(hit.snippet).split())
        print(f"{where:>12}  {hit.score:5.2f}  {hit.role.value:<9} {for_terminal(hit.conversation_title)}: {snippet}")
    return 0 if hits else 1


def _export(args: argparse.Namespace, paths: Paths) -> int:
    if args.all and args.format == "md":
        raise SlmchatError("--all exports every conversation as JSON only; leave out --format md.")
    with open_store(paths) as store:
        if args.all:
            text = json.dumps(export_all(store), ensure_ascii=False, indent=1)
        elif args.format == "json":
            data = export_conversations(store, [args.id], whole_tree=args.tree)
            text = json.dumps(data, ensure_ascii=False, indent=1)
        else:
            text = conversation_markdown(store, args.id, whole_tree=args.tree)
    text = text if text.endswith("\n") else text + "\n"
    if args.output is None:
        write_out(sys.stdout, text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise SlmchatError(f"Cannot write {for_terminal(str(args.output))}: {error.strerror or error}.",
                           detail=repr(error)) from error
    return 0


def _import(args: argparse.Namespace, paths: Paths) -> int:
    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NotAnExport(f"{for_terminal(str(args.file))} cannot be read as a slmchat export.",
                          detail=repr(error)) from error
    with open_store(paths) as store:
        ids = import_conversations(store, data)
    print(f"imported {len(ids)} conversation(s): {' '.join(str(i) for i in ids)}")
    return 0
