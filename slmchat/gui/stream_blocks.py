"""Where a streaming Markdown reply splits into blocks that later text can no longer change.

Rendering a reply costs time in proportion to its length (markdown-it, Pygments, QTextDocument:
~9 ms for 4,000 characters here), and a reply grows every ~30 ms. Drawn as settled blocks, each
rendered once, plus the growing tail, each update costs only the tail. A block is settled once a
blank line outside a code fence ends it and the next block has begun at the left margin with
something that is not a list item: the text after it cannot then turn it into a list item's
continuation, a loose list or the inside of a fence. (Split rendering can differ from the whole
by a few pixels of spacing; the finished reply is rendered whole.)
"""

from __future__ import annotations

import re

_FENCE = re.compile(r" {0,3}(```|~~~)")
_LIST_ITEM = re.compile(r"(\d{1,9}[.)]|[-*+])(\s|$)")


def settled_end(text: str, start: int = 0) -> int:
    """The offset after the last settled block of `text` (`start` when none has settled since).

    `start` must itself be a settled offset (outside any code fence), such as an earlier result.
    """
    end = start
    fence = ""
    blank_before = False
    position = start
    while True:
        newline = text.find("\n", position)
        if newline < 0:
            return end  # the last line may still grow: it settles nothing yet
        line = text[position:newline]
        if not fence and blank_before and line[:1] not in ("", " ", "\t") and not _LIST_ITEM.match(line):
            end = position  # the previous line was blank: everything before this one is settled
        marker = _FENCE.match(line)
        if marker and (not fence or marker.group(1) == fence):
            fence = "" if fence else marker.group(1)
        blank_before = not fence and not line.strip()
        position = newline + 1
