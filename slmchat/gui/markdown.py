"""Markdown to the HTML subset QTextDocument draws: markdown-it-py for text, Pygments for code.

Model output is untrusted text: raw HTML in it is shown as text (markdown-it's `html` option is
off) and only http(s)/mailto links become links. Each fenced code block gets a header with its
language and a `copy-code:N` link; the code itself is returned beside the HTML so the copy button
copies exactly what the model wrote, not the highlighted markup.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import TextLexer, get_lexer_by_name
from pygments.util import ClassNotFound

from slmchat.gui.theme import Theme

COPY_CODE = "copy-code:"
_SAFE_LINK_PREFIXES = ("http://", "https://", "mailto:")


@dataclass
class Rendered:
    """The HTML of one message and the raw text of each of its code blocks (for Copy)."""

    html: str
    code_blocks: list[str] = field(default_factory=list)


@lru_cache(maxsize=64)
def _lexer(language: str) -> Lexer:
    try:
        return get_lexer_by_name(language, stripnl=False, ensurenl=False) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()


@lru_cache(maxsize=4)
def _formatter(style: str) -> HtmlFormatter:
    return HtmlFormatter(style=style, noclasses=True, nowrap=True)


def _code_block(code: str, language: str, index: int, theme: Theme) -> str:
    highlighted = highlight(code, _lexer(language), _formatter(theme.pygments_style)).rstrip("\n")
    label = html.escape(language or "text")
    header = theme["code_header"]
    return (
        f'<table width="100%" cellspacing="0" cellpadding="0" '
        f'style="margin-top:4px; margin-bottom:10px; background-color:{theme["code_bg"]};">'
        f'<tr><td style="background-color:{header}; padding:5px 10px;">'
        f'<span style="color:{theme["muted"]}; font-size:small;">{label}</span></td>'
        f'<td align="right" style="background-color:{header}; padding:5px 10px;">'
        f'<a href="{COPY_CODE}{index}" style="color:{theme["muted"]}; text-decoration:none; '
        f'font-size:small;">Copy code</a></td></tr>'
        f'<tr><td colspan="2" style="padding:8px 10px;">'
        f'<pre style="white-space:pre-wrap; margin:0;">{highlighted}</pre></td></tr></table>'
    )


def _build_parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False})
    md.enable(["table", "strikethrough"])
    md.validateLink = lambda url: url.strip().lower().startswith(_SAFE_LINK_PREFIXES)

    def fence(self: Any, tokens: list, idx: int, options: Any, env: dict) -> str:
        token = tokens[idx]
        language = token.info.strip().split(" ")[0] if token.info else ""
        blocks: list[str] = env["code_blocks"]
        blocks.append(token.content)
        return _code_block(token.content, language, len(blocks) - 1, env["theme"])

    def table_open(self: Any, tokens: list, idx: int, options: Any, env: dict) -> str:
        return (
            f'<table border="1" cellspacing="0" cellpadding="6" '
            f'style="border-collapse:collapse; border-color:{env["theme"]["border"]}; margin-bottom:10px;">'
        )

    def code_inline(self: Any, tokens: list, idx: int, options: Any, env: dict) -> str:
        theme = env["theme"]
        return (
            f'<code style="background-color:{theme["code_bg"]};">'
            f"{html.escape(tokens[idx].content)}</code>"
        )

    md.add_render_rule("fence", fence)
    md.add_render_rule("code_block", fence)
    md.add_render_rule("table_open", table_open)
    md.add_render_rule("code_inline", code_inline)
    return md


_PARSER = _build_parser()


def render(text: str, theme: Theme) -> Rendered:
    """Render one message. Called at the view's throttle tick, never per token."""
    env: dict[str, Any] = {"code_blocks": [], "theme": theme}
    body = _PARSER.render(text, env)
    return Rendered(html=body, code_blocks=env["code_blocks"])


def plain(text: str) -> Rendered:
    """A message shown exactly as typed (the user's own words are not Markdown to them)."""
    escaped = html.escape(text).replace("\n", "<br>")
    return Rendered(html=f'<p style="white-space:pre-wrap;">{escaped}</p>')


def document_css(theme: Theme, monospace_family: str) -> str:
    """Default style sheet for the QTextDocument each message is drawn into."""
    return (
        f"p {{ margin-top:0px; margin-bottom:8px; }}"
        f"h1, h2, h3, h4 {{ margin-top:6px; margin-bottom:6px; }}"
        f"h1 {{ font-size:x-large; }} h2 {{ font-size:large; }} h3 {{ font-size:medium; }}"
        f"ul, ol {{ margin-top:0px; margin-bottom:8px; }}"
        f"li {{ margin-bottom:2px; }}"
        f"pre, code {{ font-family:'{monospace_family}'; }}"
        f"a {{ color:{theme['accent']}; }}"
        f"blockquote {{ color:{theme['muted']}; margin-left:12px; }}"
    )
