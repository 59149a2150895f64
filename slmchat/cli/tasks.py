"""`slmchat-cli translate | summarize | classify | embed`: the line-up's task models, headless.

Each command first checks from the file's metadata that the model can do the task (a chat model
asked to translate gets one line naming a model that can), then runs it in its own process
through TaskClient, as the GUI does: a crash inside llama.cpp is a one-line error, not a dead
terminal.
"""

from __future__ import annotations

import argparse
import json
import sys

from slmchat.cli.history import positive_int
from slmchat.cli.model_arg import able_model
from slmchat.cli.terminal import write_out
from slmchat.core.errors import SlmchatError
from slmchat.core.generation import FinishReason
from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.core.tasks.capabilities import Capability, Seq2SeqKind
from slmchat.paths import Paths

STDIN = "-"


def register(subparsers: argparse._SubParsersAction) -> None:
    translate = subparsers.add_parser("translate", help="translate a text with a T5 model (flan-t5)")
    _options(translate, generates=True)
    translate.add_argument("--from", dest="source", default="English", metavar="LANG",
                           help="the text's language (default: English)")
    translate.add_argument("--to", dest="target", required=True, metavar="LANG", help="the language to write")
    _text(translate)
    translate.set_defaults(func=_seq2seq, task=Seq2SeqKind.TRANSLATE)

    summarize = subparsers.add_parser("summarize", help="summarize a text with a T5 model (flan-t5)")
    _options(summarize, generates=True)
    _text(summarize)
    summarize.set_defaults(func=_seq2seq, task=Seq2SeqKind.SUMMARIZE)

    classify = subparsers.add_parser("classify", help="the sentiment of a text, with a classifier (DistilBERT SST-2)")
    _options(classify, generates=False)
    _text(classify)
    classify.set_defaults(func=_classify)

    embed = subparsers.add_parser("embed", help="sentence vectors of texts, with an embedding model (MiniLM)")
    _options(embed, generates=False)
    embed.add_argument("texts", nargs="+", metavar="TEXT", help=f"texts to embed ({STDIN}: read one from stdin)")
    embed.set_defaults(func=_embed)


def _options(parser: argparse.ArgumentParser, *, generates: bool) -> None:
    parser.add_argument("--model", required=True, metavar="PATH|ID",
                        help="a GGUF file, or the id of a model in your library")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads (default: one per physical core)")
    if generates:
        parser.add_argument("--max-tokens", type=positive_int, default=128, metavar="N",
                            help="longest output in tokens (default: 128)")
    else:
        parser.add_argument("--json", action="store_true", help="print the full result as JSON")


def _text(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("text", metavar="TEXT", help=f"the text ({STDIN}: read it from stdin)")


def _read(text: str, doing: str) -> str:
    """The text given, or stdin's for `-`; an empty one is refused before a model is loaded."""
    if text == STDIN:
        text = sys.stdin.read()
    if not text.strip():
        raise SlmchatError(f"There is nothing to {doing}: the text is empty.")
    return text


def _client(kind: TaskKind, capability: Capability, args: argparse.Namespace, paths: Paths) -> TaskClient:
    """The model in its process, once its metadata says it can do `capability`."""
    info = able_model(args.model, capability, paths)
    return TaskClient(kind, info.path, n_threads=args.threads, paths=paths)


def _seq2seq(args: argparse.Namespace, paths: Paths) -> int:
    task: Seq2SeqKind = args.task
    text = _read(args.text, task.value)
    with _client(TaskKind.SEQ2SEQ, Capability(task.value), args, paths) as model:
        languages = {"source": args.source, "target": args.target} if task is Seq2SeqKind.TRANSLATE else {}
        result = model.run(task, text, max_tokens=args.max_tokens, **languages)
    write_out(sys.stdout, result.text + "\n")
    if result.finish_reason is FinishReason.LENGTH:
        print(f"slmchat: the output stopped at --max-tokens ({args.max_tokens} tokens).", file=sys.stderr)
    return 0


def _classify(args: argparse.Namespace, paths: Paths) -> int:
    text = _read(args.text, "classify")
    with _client(TaskKind.CLASSIFY, Capability.CLASSIFY, args, paths) as model:
        [verdict] = model.classify([text])
    if args.json:
        output = json.dumps({"label": verdict.label, "scores": verdict.scores}, ensure_ascii=False)
    else:
        width = max(len(label) for label in verdict.scores)
        output = "\n".join([verdict.label] + [f"  {label:<{width}}  {score:.4f}"
                                              for label, score in verdict.scores.items()])
    write_out(sys.stdout, output + "\n")
    return 0


def _embed(args: argparse.Namespace, paths: Paths) -> int:
    texts = [_read(text, "embed") for text in args.texts]
    with _client(TaskKind.EMBED, Capability.EMBED, args, paths) as model:
        vectors = model.embed(texts)
        name, dim = model.model_name, model.dim
    if args.json:
        output = json.dumps({"model": name, "dim": dim, "vectors": vectors.tolist()}, ensure_ascii=False)
    else:
        output = f"{len(texts)} vector(s) of dimension {dim} from {name} (add --json to print them)"
    write_out(sys.stdout, output + "\n")
    return 0
