"""plain_text: untrusted model metadata becomes one line of visible text."""

from __future__ import annotations

import unicodedata

import pytest

from slmchat.core.plaintext import plain_text


@pytest.mark.parametrize(
    ("hostile", "shown"),
    [
        ("\x1b[2J\x1b[31mEvil\x1b[0m Model", "Evil Model"),  # clear screen + colour
        ("\x1b]0;new window title\x07Model", "Model"),  # OSC, ended by BEL
        ("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\", "link"),  # OSC hyperlink, ended by ST
        ("\x9b31mEight-bit CSI", "Eight-bit CSI"),
        ("Smol\u202eLM\u202c", "SmolLM"),  # right-to-left override
        ("\u2066gpj.exe\u2069", "gpj.exe"),  # isolates
        ("zero\u200bwidth\u200d\ufeff", "zerowidth"),
        ("tag\U000e0041chars", "tagchars"),
        ("bell\x07 back\x08space nul\x00", "bell backspace nul"),
        ("Smol\nLM\r\n\tInstruct\u2028end", "Smol LM Instruct end"),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_escape_and_invisible_characters_are_removed(hostile: str, shown: str) -> None:
    assert plain_text(hostile) == shown


def test_ordinary_text_in_any_script_is_kept() -> None:
    assert plain_text("Qwen2.5 — 日本語 モデル, Ελληνικά, עברית 🦙") == "Qwen2.5 — 日本語 モデル, Ελληνικά, עברית 🦙"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    text = plain_text("Smol" * 2500, max_len=200)
    assert len(text) == 200
    assert text.endswith("…")
    assert text.startswith("SmolSmol")


def test_text_at_the_limit_is_not_cut() -> None:
    assert plain_text("a" * 200) == "a" * 200


def test_nothing_invisible_survives_a_mixed_attack() -> None:
    hostile = "".join(chr(c) for c in range(0xA0)) + "\u202a\u202b\u202d\u2067\u2068\u200e\u200f" + "ok"
    text = plain_text(hostile, max_len=1000)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in text)
    assert "\x1b" not in text and text.endswith("ok")
