"""`slmchat-cli docs add | update | list | remove | search | ask`: the document library, headless.

Indexing runs in its own background process (core/documents/background.py), as in the window,
and reports each file as it is done; Ctrl+C stops it after the file in hand, and the next `add`
or `update` carries on. Search and answers use MiniLM when an embedding model is given or in the
library, else words only.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slmchat.cli.history import positive_int
from slmchat.cli.model_arg import able_model, choose_model
from slmchat.cli.terminal import for_terminal, printer, write_out
from slmchat.core.documents import answer
from slmchat.core.documents.background import IndexerProcess
from slmchat.core.documents.extract import Status
from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import Embedded, Failed, FileIndexed, Finished, Paused, Scanned
from slmchat.core.documents.retrieve import Retriever
from slmchat.core.errors import SlmchatError
from slmchat.core.generation import EngineConfig, GenerationSettings
from slmchat.core.models.library import ModelLibrary
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.core.tasks import semantic
from slmchat.core.tasks.capabilities import Capability
from slmchat.paths import Paths

DEFAULT_COLLECTION = "My documents"
_ANSWER_TOKENS = 512
_PROMPT_OVERHEAD = 200  # the system message, numbering, question


def register(subparsers: argparse._SubParsersAction) -> None:
    docs = subparsers.add_parser("docs", help="your own documents: index them, search them, ask about them")
    commands = docs.add_subparsers(dest="docs_command", metavar="ACTION")
    commands.required = True

    add = commands.add_parser("add", help="add files or folders to a collection and index them")
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    add.add_argument("--collection", default=DEFAULT_COLLECTION, metavar="NAME",
                     help=f'the collection to add to (default: "{DEFAULT_COLLECTION}")')
    _embedder_options(add)
    add.set_defaults(func=_add)

    update = commands.add_parser("update", help="index what changed in the added files and folders")
    _embedder_options(update)
    update.set_defaults(func=_update)

    listing = commands.add_parser("list", help="collections and their files, with what became of each")
    listing.set_defaults(func=_list)

    remove = commands.add_parser("remove", help="remove a collection and everything indexed from it")
    remove.add_argument("collection", metavar="ID", help="the collection's id or name (see docs list)")
    remove.set_defaults(func=_remove)

    search = commands.add_parser("search", help="the passages that best match a query")
    search.add_argument("query", metavar="QUERY")
    search.add_argument("--limit", type=positive_int, default=5, metavar="N", help="passages to show (default: 5)")
    search.add_argument("--collection", metavar="ID", help="search one collection only (id or name)")
    _embedder_options(search)
    search.set_defaults(func=_search)

    ask = commands.add_parser("ask", help="answer a question from your documents, with sources")
    ask.add_argument("question", metavar="QUESTION")
    ask.add_argument("--model", metavar="PATH|ID", help="the chat model (default: the starter model)")
    ask.add_argument("--collection", metavar="ID", help="ask one collection only (id or name)")
    ask.add_argument("--budget", type=positive_int, metavar="TOKENS",
                     help="the most tokens of sources to give the model (default: what its context holds)")
    _embedder_options(ask)
    ask.set_defaults(func=_ask)


def _embedder_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--embedder", metavar="PATH|ID",
                        help="the embedding model (default: the one in your library; none: words only)")
    parser.add_argument("--threads", type=positive_int, metavar="N", help="CPU threads for the models")


def _embedder_path(args: argparse.Namespace, paths: Paths) -> Path | None:
    if args.embedder is not None:
        return able_model(args.embedder, Capability.EMBED, paths).path
    found = semantic.embedding_model(m.info for m in ModelLibrary(paths).list() if m.info is not None)
    if found is None:
        print("slmchat: no embedding model in your library: documents are matched by their words only.",
              file=sys.stderr)
    return None if found is None else found.path


def _query_embedder(path: Path | None, args: argparse.Namespace, paths: Paths) -> TaskClient | None:
    """The embedding model for a query: one thread unless told otherwise (a sentence gains nothing
    from more, and on a busy machine extra threads only wait for each other)."""
    return None if path is None else TaskClient(TaskKind.EMBED, path, n_threads=args.threads or 1, paths=paths)


def _index(args: argparse.Namespace, paths: Paths) -> int:
    """Run the background indexer to the end, one line per file."""
    indexer = IndexerProcess(paths, _embedder_path(args, paths), n_threads=args.threads)
    try:
        for event in indexer.run():
            if isinstance(event, Scanned):
                removed = f", {event.removed} removed (gone from disk)" if event.removed else ""
                print(f"{event.pending} file(s) to index{removed}")
            elif isinstance(event, FileIndexed):
                what = f"{event.chunks} passage(s)" if event.status is Status.INDEXED else \
                    f"{event.status.value}: {event.reason}"
                write_out(sys.stdout, f"[{event.done}/{event.total}] {event.path}: {what}\n")
            elif isinstance(event, Embedded) and event.done == event.total:
                print(f"{event.done} passage(s) embedded for search by meaning")
            elif isinstance(event, Paused):
                print("paused")
            elif isinstance(event, Finished):
                print(f"done: {event.indexed} indexed, {event.skipped} skipped")
            elif isinstance(event, Failed):
                raise SlmchatError(event.message)
    except KeyboardInterrupt:
        indexer.stop()
        print("stopped: run `slmchat-cli docs update` to carry on", file=sys.stderr)
        raise
    finally:
        indexer.stop()
    return 0


def _add(args: argparse.Namespace, paths: Paths) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise SlmchatError(f"Nothing is at {', '.join(missing)}: check the path.")
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection(args.collection), args.paths)
    return _index(args, paths)


def _update(args: argparse.Namespace, paths: Paths) -> int:
    return _index(args, paths)


def _list(args: argparse.Namespace, paths: Paths) -> int:
    lines = []
    with DocumentIndex(paths.documents_database) as index:
        for collection in index.collections():
            lines.append(f"{collection.id}  {collection.name}  ({collection.files} file(s), {collection.chunks} passage(s))")
            for row in index.files(collection.id):
                reason = f"  {row.reason}" if row.reason else ""
                lines.append(f"    {row.status.value:<11} {row.path}{reason}")
    write_out(sys.stdout, "\n".join(lines or ["No documents yet: add some with `slmchat-cli docs add PATH`."]) + "\n")
    return 0


def _remove(args: argparse.Namespace, paths: Paths) -> int:
    with DocumentIndex(paths.documents_database) as index:
        collection_id = index.find_collection(args.collection)
        index.delete_collection(collection_id)
    print(f"removed collection {collection_id}")
    return 0


def _scope(index: DocumentIndex, given: str | None) -> list[int] | None:
    return None if given is None else [index.find_collection(given)]


def _search(args: argparse.Namespace, paths: Paths) -> int:
    embedder_path = _embedder_path(args, paths)
    with DocumentIndex(paths.documents_database) as index:
        scope = _scope(index, args.collection)
        embedder = _query_embedder(embedder_path, args, paths)
        try:
            hits = Retriever(index, embedder).search(args.query, args.limit, collections=scope)
        finally:
            if embedder is not None:
                embedder.close()
    if not hits:
        print("No passage matches.")
    for n, hit in enumerate(hits, 1):
        write_out(sys.stdout, f"{n}. {hit.path} — {hit.place}\n   {answer.snippet(hit.own_text)}\n")
    return 0


def _ask(args: argparse.Namespace, paths: Paths) -> int:
    model_path, _ = choose_model(args.model, None, paths)
    able_model(str(model_path), Capability.CHAT, paths)
    embedder_path = _embedder_path(args, paths)
    with DocumentIndex(paths.documents_database) as index:
        scope = _scope(index, args.collection)
        embedder = _query_embedder(embedder_path, args, paths)
        try:
            with EngineClient(EngineConfig(model_path=model_path, n_threads=args.threads), paths=paths) as engine:
                budget = args.budget or max(256, engine.info.n_ctx - _ANSWER_TOKENS - _PROMPT_OVERHEAD)
                context = Retriever(index, embedder).gather(args.question, budget, collections=scope)
                if context.mode == "empty":
                    raise SlmchatError("There are no indexed documents to answer from: add some with "
                                       "`slmchat-cli docs add PATH`.")
                settings = GenerationSettings(max_tokens=_ANSWER_TOKENS, temperature=0.2)
                show = printer(sys.stdout)
                for piece in answer.answer(engine, args.question, context, settings):
                    show(piece)
        finally:
            if embedder is not None:
                embedder.close()
    print(f"\n\nSources ({context.mode.replace('_', '-')}):")
    for source in answer.reply_sources(context):
        print(for_terminal(f"[{source['n']}] {source['file']} — {source['place']}\n    {source['snippet']}"))
    return 0
