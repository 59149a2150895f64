"""`slmchat-cli chat` and `slmchat-cli complete`: talk to a model from the terminal.

Both run the model in its engine process. Every chat turn is stored through
`slmchat.core.store.recording.ChatSession`, like the GUI's: a new conversation per run unless
`--conversation ID` continues one (its id is printed on stderr so scripts can), or none with
`--no-store`. Ctrl+C stops the reply being written (stored as stopped, with its text), not the
program; at the prompt it ends the chat. A reply cut off by the model's process dying is stored
as interrupted with its text; the interactive chat then loads the model again and goes on.
A thinking model's thinking is printed apart from its answer (`cli/reply_printer.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from slmchat.cli import EXIT_INTERRUPTED
from slmchat.cli.history import open_store, positive_int
from slmchat.cli.model_arg import choose_model
from slmchat.cli.reply_printer import ReplyPrinter
from slmchat.cli.terminal import for_terminal, printer
from slmchat.core.errors import NotAChatModel, SlmchatError
from slmchat.core.generation import (
    EngineConfig,
    FinishReason,
    GenerationSettings,
    GenerationStats,
)
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.store.recording import ChatSession, Turn
from slmchat.core.store.records import Conversation
from slmchat.core.store.store import Store
from slmchat.paths import Paths


def register(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser("chat", help="chat with a model (one turn with --prompt); every turn is stored")
    _model_options(chat)
    chat.add_argument("--system", metavar="TEXT", help="a system prompt")
    chat.add_argument("--prompt", metavar="TEXT", help="send one message, print the reply, exit")
    chat.add_argument("--thinking", choices=("auto", "on", "off"),
                      help="for models that think before they answer: auto does what the model does by "
                           "default, on and off switch it where the model can (default: "
                           f"{GenerationSettings().thinking})")
    chat.add_argument("--thinking-budget", type=_budget, metavar="N",
                      help="the most tokens a reply may spend thinking; then the answer follows "
                           "(0: no limit, the default)")
    chat.add_argument("--no-thinking", action="store_true",
                      help="print a thinking model's answer only, not its thinking (it still thinks: "
                           "see --thinking)")
    where = chat.add_mutually_exclusive_group()
    where.add_argument("--conversation", type=positive_int, metavar="ID",
                       help="continue stored conversation ID (its model, system prompt and settings, "
                            "unless given here: those given are kept for it)")
    where.add_argument("--no-store", action="store_true", help="keep no record of this chat")
    chat.set_defaults(func=run_chat)

    complete = subparsers.add_parser("complete", help="continue a text (for base models); not stored")
    _model_options(complete)
    complete.add_argument("--prompt", metavar="TEXT", required=True, help="the text to continue")
    complete.set_defaults(func=run_complete)


def _temperature(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 5.0:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"must be between 0 and 5, not {text}")
    return value


def _budget(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 (no limit) or more, not {text}")
    return value


def _model_options(parser: argparse.ArgumentParser) -> None:
    defaults = GenerationSettings()
    parser.add_argument("--model", metavar="PATH", help="a GGUF file, or the id of a model in your library "
                        "(default: the conversation's model, else the starter model)")
    # None means "not given": a continued conversation keeps its own value.
    parser.add_argument("--max-tokens", type=positive_int, metavar="N",
                        help=f"longest reply in tokens (default: {defaults.max_tokens})")
    parser.add_argument("--temperature", type=_temperature, metavar="T",
                        help=f"0 always picks the likeliest word (default: {defaults.temperature})")
    parser.add_argument("--seed", type=int, metavar="S", help="fix the randomness, to repeat a reply")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="CPU threads (default: one per physical core)")
    parser.add_argument("--speculative", choices=("auto", "off"),
                        help="auto: guess tokens from the prompt and the reply so far and let the model check "
                             "several at once (faster when a reply repeats its input; the same reply either "
                             "way; only where the model runs with flash attention); "
                             f"off: one token at a time (default: {defaults.speculative})")
    parser.add_argument("--stats", action="store_true",
                        help="end each reply with a line of speed figures, prompt tokens evaluated/reused "
                             "and the share of guessed tokens accepted")


def _settings(args: argparse.Namespace, base: GenerationSettings | None) -> GenerationSettings:
    """`base` (a conversation's settings, else the defaults) with the options given on the command line."""
    names = ("max_tokens", "temperature", "seed", "speculative", "thinking", "thinking_budget")
    given = {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}
    return dataclasses.replace(base or GenerationSettings(), **given)


def stats_line(stats: GenerationStats) -> str:
    """The one line `--stats` prints."""
    line = (f"[{stats.finish_reason.value}] time to first token {stats.time_to_first_token_s:.2f} s, "
            f"{stats.decode_tokens_per_s:.1f} tokens/s, prompt tokens: {stats.prompt_evaluated} "
            f"evaluated, {stats.prompt_reused} reused ({stats.completion_tokens} generated)")
    if stats.drafted_tokens:
        line += (f", guessed tokens: {stats.accepted_tokens} of {stats.drafted_tokens} accepted "
                 f"({stats.accepted_tokens / stats.drafted_tokens:.0%})")
    if stats.thinking_tokens:
        line += f", thinking tokens: {stats.thinking_tokens}"
    return line


def _open_engine(path: Path, args: argparse.Namespace, paths: Paths) -> EngineClient:
    return EngineClient(EngineConfig(model_path=path, n_threads=args.threads), paths=paths)


# --- Ctrl+C -----------------------------------------------------------------------------------
class _CtrlC:
    """SIGINT handler: while a reply is under way (`replying` is its cancel event) Ctrl+C stops
    that reply; otherwise it raises KeyboardInterrupt as usual (at the prompt: end the chat).

    `replying` stays set until the turn is stored, so a late Ctrl+C cannot break off the
    database write that records the reply.
    """

    def __init__(self) -> None:
        self.replying: threading.Event | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.replying is None:
            raise KeyboardInterrupt
        self.replying.set()


@contextmanager
def _ctrl_c_stops_replies() -> Iterator[_CtrlC]:
    handler = _CtrlC()
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield handler
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield handler
    finally:
        signal.signal(signal.SIGINT, previous)


# --- chat -------------------------------------------------------------------------------------
def run_chat(args: argparse.Namespace, paths: Paths) -> int:
    if args.prompt is not None and not args.prompt.strip():
        raise SlmchatError("There is nothing to send: the prompt is empty.")
    with (Store(":memory:") if args.no_store else open_store(paths)) as store:
        conversation = store.conversation(args.conversation) if args.conversation else None
        model_path, model = choose_model(args.model, conversation, paths)
        with _open_engine(model_path, args, paths) as engine, _ctrl_c_stops_replies() as ctrl_c:
            if not engine.info.is_chat:
                raise NotAChatModel(
                    f"{for_terminal(engine.info.name)} is a base model: it has no chat format and only "
                    "continues text. Use `slmchat-cli complete` with it, or choose a chat (instruct) model.")
            session = _session(store, engine, args, conversation, model)
            _note_fixed_thinking(engine, session.settings)
            try:
                if args.prompt is not None:
                    turn = _turn(session, engine, args.prompt, ctrl_c, args)
                    stopped = turn.stats is not None and turn.stats.finish_reason is FinishReason.STOPPED
                    return EXIT_INTERRUPTED if stopped else 0  # a stopped reply is stored, but not whole
                return _interactive(session, engine, ctrl_c, args)
            finally:
                if session.conversation_id is not None and not args.no_store:
                    print(f"slmchat: conversation {session.conversation_id} (continue it with "
                          f"--conversation {session.conversation_id})", file=sys.stderr)


def _session(store: Store, engine: EngineClient, args: argparse.Namespace,
             conversation: Conversation | None, model: str) -> ChatSession:
    """A session on the new or continued conversation; options given change a continued one."""
    if conversation is None:
        return ChatSession(store, engine, model=model, system_prompt=args.system or "",
                           settings=_settings(args, None), save_model_state=not args.no_store)
    settings = _settings(args, conversation.settings)
    if settings != conversation.settings or args.system is not None:
        system = conversation.system_prompt if args.system is None else args.system
        store.update_conversation(conversation.id, settings=settings, system_prompt=system)
    return ChatSession(store, engine, conversation_id=conversation.id, model=model)


def _interactive(session: ChatSession, engine: EngineClient, ctrl_c: _CtrlC, args: argparse.Namespace) -> int:
    """The chat loop. A failed turn is stored as it ended and reported in one line; when the
    model's process died with it, the model is loaded again and the chat goes on."""
    where = ("an unrecorded chat" if args.no_store else "a new conversation" if session.conversation_id is None
             else f"conversation {session.conversation_id}")
    print(f"Chatting with {for_terminal(engine.info.name)} in {where}. Ctrl+C stops a reply; "
          "an empty line, Ctrl+D or Ctrl+C at the prompt ends.", file=sys.stderr)
    while True:
        ctrl_c.replying = None
        try:
            text = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not text.strip():
            return 0
        try:
            _turn(session, engine, text, ctrl_c, args)
        except SlmchatError as error:
            print(f"\nslmchat: {error}", file=sys.stderr)
            if not engine.alive:
                print("slmchat: loading the model again…", file=sys.stderr)
                engine.reload()


def _note_fixed_thinking(engine: EngineClient, settings: GenerationSettings) -> None:
    """Say so when --thinking asks a model that always thinks to switch."""
    if engine.info.thinking is not None and not engine.info.thinking_switch and settings.thinking != "auto":
        print(f"slmchat: {for_terminal(engine.info.name)} always thinks before it answers; it has no "
              f"switch for --thinking {settings.thinking}.", file=sys.stderr)


def _turn(session: ChatSession, engine: EngineClient, text: str, ctrl_c: _CtrlC,
          args: argparse.Namespace) -> Turn:
    """One stored turn, its reply streamed to stdout; Ctrl+C from now on stops the reply."""
    show = ReplyPrinter(sys.stdout, engine.info.thinking, show_thinking=not args.no_thinking)
    ctrl_c.replying = threading.Event()
    try:
        turn = session.send(text, show, ctrl_c.replying)
    except BaseException:
        show.end(failed=True)
        raise
    show.end()
    if args.stats and turn.stats is not None:
        print(stats_line(turn.stats), flush=True)
    return turn


# --- complete ---------------------------------------------------------------------------------
def run_complete(args: argparse.Namespace, paths: Paths) -> int:
    show = printer(sys.stdout)
    model_path, _ = choose_model(args.model, None, paths)
    with _open_engine(model_path, args, paths) as engine, _ctrl_c_stops_replies() as ctrl_c:
        ctrl_c.replying = threading.Event()
        generation = engine.complete(args.prompt, _settings(args, None), ctrl_c.replying)
        show(args.prompt)
        for piece in generation:
            show(piece)
        show("\n")
    if args.stats:
        print(stats_line(generation.stats))
    return EXIT_INTERRUPTED if generation.stats.finish_reason is FinishReason.STOPPED else 0
