"""Vet a model's Jinja chat template without running it: parse only, then walk the syntax tree.

Jinja's sandbox stops code execution but not CPU or memory bombs, and Jinja constant-folds
expressions such as `9**(9**9)` while *compiling* — inside llama-cpp-python's `Llama()`, with the
GIL held. So here the template is only parsed (`Environment.parse` never compiles or
optimises) and refused when it uses constructs with no place in a chat template but every place in
a bomb. The engine process's time and memory limits catch what slips past these rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

import jinja2
import jinja2.ext
from jinja2 import nodes

from slmchat.core.errors import UnsafeChatTemplate

MAX_TEMPLATE_CHARS = 1 << 20  # the longest real templates are ~100 KB
MAX_CONSTANT = 10**6  # numbers in a template: indexes, small counts
MAX_REPEAT = 10_000  # `'x' * n`, `width=n`: more is a memory bomb, not formatting
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
# A %-format or str.format width of 5+ digits: `'%099999999d' % 1` is a memory bomb.
_HUGE_FORMAT_WIDTH = re.compile(
    r"%[-+ #0]*\d{5,}(?:\.\d+)?[diouxXeEfFgGcrsa%]"  # printf style: '%0999999d'
    r"|\{[\w.\[\]]*:[^{}\d]*\d{5,}[^{}]*\}"  # str.format style: '{:>99999}', not JSON '{"n": 99999}'
)

_ARITHMETIC = (nodes.Add, nodes.Sub, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Mod)
_UNSAFE = "The model's chat template could freeze the app or use up its memory, so it is not used."
_UNREADABLE = "The model's chat template has errors and cannot be used."


class GenerationTag(jinja2.ext.Extension):
    """Accept Hugging Face's `{% generation %}` tag (SmolLM3's template has it), as llama-cpp-python's
    formatter does: it marks the assistant's part for training and renders as its contents."""

    tags: ClassVar[set[str]] = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> list[nodes.Node]:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


# The same syntax llama-cpp-python's Jinja2ChatFormatter accepts; only ever used to parse.
_PARSER_ENV = jinja2.Environment(
    trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
)


def check_chat_template(text: str) -> None:
    """Raise UnsafeChatTemplate when `text` cannot be parsed or could hang or exhaust memory.

    Refused: `**`, numbers above 10**6, repetition or widths above 10,000, attribute or item
    access to `_`-names, `lipsum`, loops over `range` (or a multiplied value) nested in one
    another, a value doubled inside a loop, and macros recursing more than once on a counter.
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        raise UnsafeChatTemplate(_UNSAFE, detail=f"template of {len(text)} characters")
    try:
        tree = _PARSER_ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise UnsafeChatTemplate(_UNREADABLE, detail=f"line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise UnsafeChatTemplate(_UNSAFE, detail="nested too deeply to parse") from None
    try:
        _Vetter(tree).walk(tree, synthetic_loops=0, in_loop=False)
    except RecursionError:
        raise UnsafeChatTemplate(_UNSAFE, detail="nested too deeply") from None


def _refuse(reason: str) -> UnsafeChatTemplate:
    return UnsafeChatTemplate(_UNSAFE, detail=reason)


def _walk_all(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk_all(child)


def _is_synthetic(expr: nodes.Node) -> bool:
    """An iterable made up by the template (range, repetition), not taken from the messages."""
    for n in _walk_all(expr):
        if isinstance(n, nodes.Mul):
            return True
        if isinstance(n, nodes.Call) and isinstance(n.node, nodes.Name) and n.node.name == "range":
            return True
    return False


def _calls_to(tree: nodes.Node, name: str) -> int:
    return sum(
        1
        for n in _walk_all(tree)
        if isinstance(n, nodes.Call) and isinstance(n.node, nodes.Name) and n.node.name == name
    )


def _counting_self_calls(macro: nodes.Macro) -> int:
    """Self-calls whose arguments are computed (`f(n - 1)`), not taken from the data.

    Recursion over the data (`render(schema.properties[k], indent + 1)`, common in tool-calling
    templates) ends with the data; recursion on a counter alone (`f(n-1)` twice) is exponential.
    A counting self-call inside a loop counts twice.
    """

    params = {arg.name for arg in macro.args}

    def reads_data(n: nodes.Node) -> bool:
        return isinstance(n, (nodes.Getattr, nodes.Getitem, nodes.Call, nodes.Filter)) or (
            isinstance(n, nodes.Name) and n.name not in params
        )

    def counting(call: nodes.Call) -> bool:
        args = list(call.args) + [kw.value for kw in call.kwargs]
        nodes_in_args = [n for a in args for n in _walk_all(a)]
        return any(isinstance(n, _ARITHMETIC) for n in nodes_in_args) and not any(map(reads_data, nodes_in_args))

    def count(node: nodes.Node, in_loop: bool) -> int:
        total = 0
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == macro.name:
            total += (2 if in_loop else 1) if counting(node) else 0
        for child in node.iter_child_nodes():
            total += count(child, in_loop or isinstance(node, nodes.For))
        return total

    return sum(count(child, False) for child in macro.body)


def _int_factors(node: nodes.Node) -> int:
    """The product of the integer constants in a chain of multiplications."""
    if isinstance(node, nodes.Mul):
        return _int_factors(node.left) * _int_factors(node.right)
    if isinstance(node, nodes.Const) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return abs(node.value)
    return 1


def _reads(node: nodes.Node, target: nodes.Node) -> bool:
    """Whether `node` reads the variable (`x`) or namespace attribute (`ns.s`) that `target` sets."""
    if isinstance(target, nodes.Name):
        return isinstance(node, nodes.Name) and node.name == target.name
    return (
        isinstance(target, nodes.NSRef)
        and isinstance(node, nodes.Getattr)
        and node.attr == target.attr
        and isinstance(node.node, nodes.Name)
        and node.node.name == target.name
    )


def _mentions(value: nodes.Node, target: nodes.Node) -> int:
    """How many copies of its own target an assignment's value can hold (`x ~ x` holds two).

    Only one branch of `a if c else b` is taken, and tests and comparisons give booleans, so
    `x = x if x is string else x|string` holds one copy, not three.
    """
    if _reads(value, target):
        return 1
    if isinstance(value, nodes.CondExpr):
        return max(_mentions(value.expr1, target), _mentions(value.expr2, target) if value.expr2 else 0)
    if isinstance(value, (nodes.Test, nodes.Compare, nodes.Not, nodes.And, nodes.Or)):
        return 0
    return sum(_mentions(child, target) for child in value.iter_child_nodes())


class _Vetter:
    def __init__(self, tree: nodes.Template) -> None:
        self.looping_macros: set[str] = set()
        for macro in tree.find_all(nodes.Macro):
            if _counting_self_calls(macro) > 1:
                raise _refuse(f"macro {macro.name!r} calls itself more than once on computed arguments")
            if any(_is_synthetic(f.iter) for f in macro.find_all(nodes.For)):
                self.looping_macros.add(macro.name)

    def walk(self, node: nodes.Node, synthetic_loops: int, in_loop: bool) -> None:
        self.check(node, synthetic_loops, in_loop)
        if isinstance(node, nodes.For):
            synthetic = _is_synthetic(node.iter)
            if synthetic and synthetic_loops:
                raise _refuse("a range loop inside a range loop")
            if synthetic and node.recursive and _calls_to(node, "loop"):
                raise _refuse("a recursive loop over a range")
            self.walk(node.iter, synthetic_loops, in_loop)
            if node.test is not None:
                self.walk(node.test, synthetic_loops, in_loop)
            for child in node.body + node.else_:
                self.walk(child, synthetic_loops + synthetic, True)
            return
        for child in node.iter_child_nodes():
            self.walk(child, synthetic_loops, in_loop)

    def check(self, node: nodes.Node, synthetic_loops: int, in_loop: bool) -> None:
        if isinstance(node, nodes.Pow):
            raise _refuse("uses ** (power)")
        if isinstance(node, nodes.Const):
            value = node.value
            if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) > MAX_CONSTANT:
                raise _refuse(f"the number {value!r} is too large")
            if isinstance(value, str) and _HUGE_FORMAT_WIDTH.search(value):
                raise _refuse("a format with a huge width")
        elif isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            raise _refuse(f"reads the hidden attribute {node.attr!r}")
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and str(node.arg.value).startswith("_"):
            raise _refuse(f"reads the hidden item {node.arg.value!r}")
        elif isinstance(node, nodes.Filter):
            self.check_filter(node)
        elif isinstance(node, nodes.Mul) and _int_factors(node) > MAX_REPEAT:
            raise _refuse(f"repeats something {_int_factors(node)} times")
        elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name):
            if node.node.name == "lipsum":
                raise _refuse("calls lipsum")
            if synthetic_loops and node.node.name in self.looping_macros:
                raise _refuse(f"calls the looping macro {node.node.name!r} inside a range loop")
        elif isinstance(node, (nodes.Assign, nodes.AssignBlock)) and in_loop:
            value = node.node if isinstance(node, nodes.Assign) else nodes.Output(node.body)
            if _mentions(value, node.target) > 1:
                raise _refuse("doubles a value inside a loop")

    @staticmethod
    def check_filter(node: nodes.Filter) -> None:
        if node.name == "attr":
            arg = node.args[0] if node.args else None
            if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str) and not arg.value.startswith("_")):
                raise _refuse("uses the attr filter on a hidden or computed name")
        if node.name in _WIDTH_FILTERS:
            for arg in list(node.args) + [kw.value for kw in node.kwargs]:
                if isinstance(arg, nodes.Const) and isinstance(arg.value, int) and abs(arg.value) > MAX_REPEAT:
                    raise _refuse(f"the {node.name} filter with {arg.value}")
