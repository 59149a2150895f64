"""`slmchat-cli chat` and `slmchat-cli complete`: talk to a model from the terminal.

Both run the model in its engine process. `ChatSession` holds the conversation and is the hook
for whatever wants to see each message (storing chats, for instance): pass `on_message`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TextIO

from slmchat.core.engine_process import EngineClient
from slmchat.core.errors import ModelFileMissing
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    Generation,
    GenerationSettings,
    GenerationStats,
    Role,
)
from slmchat.paths import Paths, starter_model

# Everything a terminal would act on rather than show: C0/C1 controls except tab and newline.
_TERMINAL_CONTROLS = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


class Engineish(Protocol):
    def stream_chat(self, messages: list[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None) -> Generation: ...


MessageHook = Callable[[ChatMessage, "GenerationStats | None"], None]


class ChatSession:
    """A conversation: the history sent each turn, and a hook called with every new message.

    `on_message(message, stats)` sees the user's message (stats None) before the model is
    asked, and the reply — also a stopped or interrupted one, with its text so far — after.
    """

    def __init__(self, engine: Engineish, settings: GenerationSettings, *, system: str | None = None,
                 history: list[ChatMessage] | None = None, on_message: MessageHook | None = None) -> None:
        self.engine = engine
        self.settings = settings
        self.messages: list[ChatMessage] = list(history or [])
        if system and not self.messages:
            self.messages.append(ChatMessage(Role.SYSTEM, system))
        self._on_message = on_message or (lambda message, stats: None)

    def send(self, text: str, show: Callable[[str], None], cancel: threading.Event | None = None) -> GenerationStats:
        """Ask the model to answer `text`, passing each piece of the reply to `show`."""
        user = ChatMessage(Role.USER, text)
        self.messages.append(user)
        self._on_message(user, None)
        generation = self.engine.stream_chat(self.messages, self.settings, cancel)
        try:
            for piece in generation:
                show(piece)
        finally:
            reply = ChatMessage(Role.ASSISTANT, generation.text)
            self.messages.append(reply)
            self._on_message(reply, generation.stats)
        return generation.stats


def register(subparsers: argparse._SubParsersAction) -> None:
    chat = subparsers.add_parser("chat", help="chat with a model (one turn with --prompt)")
    _model_options(chat)
    chat.add_argument("--system", metavar="TEXT", help="a system prompt")
    chat.add_argument("--prompt", metavar="TEXT", help="send one message, print the reply, exit")
    chat.set_defaults(func=run_chat)

    complete = subparsers.add_parser("complete", help="continue a text (for base models)")
    _model_options(complete)
    complete.add_argument("--prompt", metavar="TEXT", required=True, help="the text to continue")
    complete.set_defaults(func=run_complete)


def _model_options(parser: argparse.ArgumentParser) -> None:
    defaults = GenerationSettings()
    parser.add_argument("--model", type=Path, metavar="PATH", help="a GGUF file (default: the starter model)")
    parser.add_argument("--max-tokens", type=int, default=defaults.max_tokens, metavar="N")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, metavar="T")
    parser.add_argument("--seed", type=int, default=None, metavar="S")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads (default: one per physical core)")
    parser.add_argument("--stats", action="store_true",
                        help="end with a line of speed figures and prompt tokens evaluated/reused")


def _settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed)


def _open_engine(args: argparse.Namespace, paths: Paths) -> EngineClient:
    model = args.model or starter_model()
    if model is None:
        raise ModelFileMissing("No model given, and the starter model is not installed. Pass --model PATH.")
    return EngineClient(EngineConfig(model_path=Path(model), n_threads=args.threads), paths=paths)


def _printer(out: TextIO) -> Callable[[str], None]:
    def show(piece: str) -> None:
        out.write(piece.translate(_TERMINAL_CONTROLS))
        out.flush()
    return show


def stats_line(stats: GenerationStats) -> str:
    """The one line `--stats` prints."""
    return (f"[{stats.finish_reason.value}] time to first token {stats.time_to_first_token_s:.2f} s, "
            f"{stats.decode_tokens_per_s:.1f} tokens/s, prompt tokens: {stats.prompt_evaluated} "
            f"evaluated, {stats.prompt_reused} reused ({stats.completion_tokens} generated)")


@contextmanager
def _ctrl_c_stops(cancel: threading.Event) -> Iterator[None]:
    """While a reply streams, Ctrl+C stops the reply instead of the program."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_chat(args: argparse.Namespace, paths: Paths) -> int:
    show = _printer(sys.stdout)
    with _open_engine(args, paths) as engine:
        session = ChatSession(engine, _settings(args), system=args.system)
        if args.prompt is not None:
            _turn(session, args.prompt, show, args.stats)
            return 0
        print(f"Chatting with {engine.info.name}. Ctrl+C stops a reply; Ctrl+D or an empty line ends.",
              file=sys.stderr)
        while True:
            try:
                text = input("> ")
            except EOFError:
                return 0
            if not text.strip():
                return 0
            _turn(session, text, show, args.stats)


def _turn(session: ChatSession, text: str, show: Callable[[str], None], with_stats: bool) -> None:
    cancel = threading.Event()
    with _ctrl_c_stops(cancel):
        stats = session.send(text, show, cancel)
    show("\n")
    if with_stats:
        print(stats_line(stats))


def run_complete(args: argparse.Namespace, paths: Paths) -> int:
    show = _printer(sys.stdout)
    cancel = threading.Event()
    with _open_engine(args, paths) as engine, _ctrl_c_stops(cancel):
        generation = engine.complete(args.prompt, _settings(args), cancel)
        show(args.prompt)
        for piece in generation:
            show(piece)
        show("\n")
    if args.stats:
        print(stats_line(generation.stats))
    return 0
