"""Where a streaming Markdown reply splits into blocks that later text can no longer change.

Rendering a reply costs time in proportion to its length (markdown-it, Pygments, QTextDocument:
~9 ms for 4,000 characters here), and a reply grows every ~50 ms. Drawn as settled blocks, each
rendered once, plus the growing tail, each update costs only the tail. A block is settled once a
blank line outside a code fence ends it and the next block has begun at the left margin with
something that is not a list item: the text after it cannot then turn it into a list item's
continuation, a loose list or the inside of a fence. (Split rendering can differ from the whole
by a few pixels of spacing; the finished reply is rendered whole.)
"""

from __future__ import annotations

import re

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")  # indent, the run of markers, the rest of the line
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
        fence = _fence_after(line, fence)
        blank_before = not fence and not line.strip()
        position = newline + 1


def _fence_after(line: str, fence: str) -> str:
    """The open fence's markers after `line` ("" outside a fence), by CommonMark's rules.

    A fence opens with 3 or more backticks or tildes (a backtick opener's info string holds no
    backtick: "```ls```" is inline code) and closes only on a line of the same character, at
    least as many of it, and nothing else but spaces or tabs; so a "```python" line inside a
    fence, or "```" inside a "````" fence, is code.
    """
    marker = _FENCE.match(line)
    if marker is None:
        return fence
    run, rest = marker.groups()
    if not fence:
        return "" if run[0] == "`" and "`" in rest else run
    closes = run[0] == fence[0] and len(run) >= len(fence) and not rest.strip(" \t")
    return "" if closes else fence
