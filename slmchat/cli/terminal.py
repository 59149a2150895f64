"""Text for the user's terminal: nothing printed may act as a terminal command.

Model replies, stored messages and model names are untrusted: an escape sequence in them could
clear the screen, retitle the window or hide text. Every C0 and C1 control character except
tab and newline is dropped — ESC (and the 8-bit CSI) introduce every such sequence, so what is
left of one is harmless visible text. Streamed pieces are filtered one by one, which holds even
when a sequence is split across pieces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

_CONTROLS = {c: None for c in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if c not in (0x09, 0x0A)}


def for_terminal(text: str) -> str:
    """`text` without the characters a terminal would act on rather than show."""
    return text.translate(_CONTROLS)


def printer(stream: TextIO) -> Callable[[str], None]:
    """A function that writes each piece of text to `stream` at once, made safe to show."""

    def show(piece: str) -> None:
        stream.write(for_terminal(piece))
        stream.flush()

    return show


def write_out(stream: TextIO, text: str) -> None:
    """Write a command's output: filtered on a terminal, exact when redirected to a file or pipe
    (an export piped into a file must keep every character)."""
    stream.write(for_terminal(text) if stream.isatty() else text)
