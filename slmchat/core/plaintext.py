"""Turn untrusted text (model names, descriptions from a GGUF or the hub) into safe plain text."""

from __future__ import annotations

import re
import unicodedata

# Terminal escape sequences: CSI (ESC [ … or the 8-bit 0x9B), OSC/DCS/APC/PM/SOS strings ended
# by BEL or ST, and two-character ESC sequences. Removed whole, so no fragment ("[31m") remains;
# an unterminated string loses only its introducer, never the rest of the text.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]P^_X]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]?"
)
# Control (Cc), format (Cf: bidi overrides and isolates, zero-width characters, BOM, tags) and
# lone surrogates (Cs): none is visible text, and bidi controls can make a name read backwards.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_ELLIPSIS = "…"


def plain_text(s: str, max_len: int = 200) -> str:
    """One line of visible text: escapes and invisible characters removed, whitespace collapsed.

    Longer results are cut to `max_len` characters, the last one being an ellipsis. Used for
    every piece of model metadata shown in the GUI or printed on a terminal.
    """
    if max_len < 1:
        return ""
    # Bound the work on huge inputs: far more than can survive the cap is never needed.
    s = s[: max_len * 8 + 1024]
    s = _ESCAPES.sub("", s)
    kept = []
    for ch in s:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in _INVISIBLE_CATEGORIES:
            kept.append(ch)
    text = " ".join("".join(kept).split())
    if len(text) > max_len:
        text = text[: max_len - 1].rstrip() + _ELLIPSIS
    return text
