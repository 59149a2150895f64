"""A streamed reply on the terminal: a thinking model's thinking set apart from its answer.

The engine's pieces are the raw reply, markers and all (`Generation.text`); they are cut with
`split_reply` as they come, and only what is new of each part is printed. Thinking is dimmed on a
terminal, and put between "[thinking]" and "[/thinking]" lines when the output goes to a file or
a pipe (where escape codes would be noise); `show_thinking=False` prints the answer alone. The
model's text is made safe to show (`for_terminal`) before the printer adds its own codes.
"""

from __future__ import annotations

from typing import TextIO

from slmchat.cli.terminal import for_terminal
from slmchat.core.generation import ThinkingMarkers, split_reply

DIM, RESET = "\x1b[2m", "\x1b[0m"


class ReplyPrinter:
    """Call it with each piece of a reply; `end()` once the reply has ended."""

    def __init__(self, stream: TextIO, markers: ThinkingMarkers | None, *, show_thinking: bool = True) -> None:
        self._stream = stream
        self._markers = markers
        self._show_thinking = show_thinking
        self._terminal = stream.isatty()
        self._text = ""
        self._thinking_shown = 0  # characters of the thinking printed so far
        self._answer_shown = 0
        self._in_thinking = False  # the thinking's opening (dim, or "[thinking]") is out, its end not yet

    def __call__(self, piece: str) -> None:
        self._text += piece
        split = split_reply(self._text, self._markers)
        if self._show_thinking and len(split.thinking) > self._thinking_shown:
            if not self._in_thinking and not self._thinking_shown:
                self._write(DIM if self._terminal else "[thinking]\n")
                self._in_thinking = True
            self._write(for_terminal(split.thinking[self._thinking_shown:]))
            self._thinking_shown = len(split.thinking)
        if len(split.answer) > self._answer_shown:
            self._close_thinking()
            self._write(for_terminal(split.answer[self._answer_shown:]))
            self._answer_shown = len(split.answer)
        self._stream.flush()

    def end(self, *, failed: bool = False) -> None:
        """The reply is over: close the thinking if still open, end the line. When it `failed`,
        only the thinking is closed (undimmed), and the caller's message starts its own line."""
        if failed:
            if self._in_thinking:
                self._write(RESET if self._terminal else "\n[/thinking]")
                self._in_thinking = False
        else:
            self._close_thinking()
            self._write("\n")
        self._stream.flush()

    def _close_thinking(self) -> None:
        if self._in_thinking:
            self._write(f"{RESET}\n\n" if self._terminal else "\n[/thinking]\n\n")
            self._in_thinking = False

    def _write(self, text: str) -> None:
        self._stream.write(text)
