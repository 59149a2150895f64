"""The house rules for imports, read from the source and kept by a test.

Each package's `__init__` docstring says what it may import (`May import:`) and what it must not
(`Must not import:`); this test reads those lines, so the rule and its statement cannot drift
apart. On top: no Qt outside the GUI, core's shared modules import none of its packages, and no
import circle anywhere, lazy and type-checking imports included (a circle hidden inside a
function is still a circle for the reader). Each rule is also broken on purpose, on a copy of
the tree, to show the check notices.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "slmchat"
QT = ("PySide6", "shiboken6")
QT_ALLOWED = ("slmchat.gui", "slmchat.app")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted (a name inside a module counts as the module)
    line: int


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def _imports(root: Path) -> list[Import]:
    """Every import in the tree, wherever it stands (top level, function, TYPE_CHECKING block)."""
    modules = _modules(root)
    found: list[Import] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [Import(name, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    found.append(Import(name, submodule if submodule in modules else base, node.lineno))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _docstring_rule(init: Path, heading: str) -> list[str] | None:
    """The names on the `heading:` line of a package's docstring, or None if it has none."""
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    for line in doc.splitlines():
        if line.startswith(heading + ":"):
            text = line.partition(":")[2].split("(")[0]
            return [name.strip().rstrip(".") for name in text.split(",") if name.strip()]
    return None


def _core_name(name: str) -> str:
    """`errors` -> `slmchat.core.errors`; a name given in full (`slmchat.paths`) stays as it is."""
    return name if name.startswith("slmchat.") else f"slmchat.core.{name}"


def _circles(imports: list[Import], modules: dict[str, Path]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan), each one import circle."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def violations(root: Path) -> list[str]:
    """Every broken import rule in the package at `root` (a `slmchat/` folder), one line each."""
    modules = _modules(root)
    imports = _imports(root)
    core = root / "core"
    problems: list[str] = []

    def where(imp: Import) -> str:
        return f"{imp.source} (line {imp.line}) imports {imp.target}"

    packages = {path.parent.name: path for path in core.glob("*/__init__.py")}
    allowed = {}
    for package, init in packages.items():
        may = _docstring_rule(init, "May import")
        if may is None:
            problems.append(f"slmchat.core.{package}: its __init__ docstring has no 'May import:' line")
        allowed[package] = [_core_name(name) for name in may or []]
    forbidden = {
        _module_name(init, root): [_core_name(n) if n in packages else n for n in names]
        for init in root.rglob("__init__.py") if (names := _docstring_rule(init, "Must not import"))
    }

    for imp in imports:
        top = imp.target.split(".")[0]
        if top in QT and not any(_within(imp.source, allowed_) for allowed_ in QT_ALLOWED):
            problems.append(f"Qt outside the GUI: {where(imp)}")
        for package, names in forbidden.items():
            if _within(imp.source, package) and any(_within(imp.target, name) for name in names):
                problems.append(f"forbidden in {package}: {where(imp)}")
        if not _within(imp.source, "slmchat.core") or imp.target in ("slmchat", "slmchat.core"):
            continue
        inside = imp.source.split(".")[2] if imp.source.count(".") >= 2 else None
        if inside is None or inside not in packages:  # a shared module directly in core/
            shared = _within(imp.target, "slmchat.core") and imp.target.count(".") == 2 \
                and imp.target.split(".")[2] not in packages
            if _within(imp.target, "slmchat") and not shared:
                problems.append(f"a shared module of core imports beyond core's shared modules: {where(imp)}")
            continue
        if not _within(imp.target, "slmchat") or _within(imp.target, f"slmchat.core.{inside}"):
            continue
        if not any(_within(imp.target, name) for name in allowed[inside]):
            problems.append(f"not in slmchat.core.{inside}'s 'May import': {where(imp)}")

    problems += [f"import circle: {' <-> '.join(group)}" for group in _circles(imports, modules)]
    rules = [Import(f"slmchat.core.{package}", name, 0) for package, names in allowed.items() for name in names]
    nodes = {f"slmchat.core.{package}": init for package, init in packages.items()}
    problems += [f"packages allowed to import each other: {' <-> '.join(group)}" for group in _circles(rules, nodes)]
    return problems


def test_the_source_tree_keeps_every_import_rule():
    assert violations(SOURCE) == []


def test_every_core_package_says_what_it_holds_and_may_import():
    for init in sorted((SOURCE / "core").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.splitlines()) >= 3, f"{init.parent.name}: say what the package holds"
        assert _docstring_rule(init, "May import") is not None, init.parent.name


# --- each rule broken on purpose, on a copy of the tree ---------------------------------------
BROKEN = {
    "Qt in a core package": ("core/store/records.py", "from PySide6.QtCore import QObject",
                             "Qt outside the GUI: slmchat.core.store.records"),
    "Qt in the CLI": ("cli/terminal.py", "import PySide6", "Qt outside the GUI: slmchat.cli.terminal"),
    "llama.cpp in the window": ("gui/chat_view.py", "import llama_cpp",
                                "forbidden in slmchat.gui: slmchat.gui.chat_view"),
    "SQLite in the window": ("gui/sidebar.py", "import sqlite3", "forbidden in slmchat.gui: slmchat.gui.sidebar"),
    "the hub client in the window": ("gui/downloads.py", "from huggingface_hub import hf_hub_download",
                                     "forbidden in slmchat.gui: slmchat.gui.downloads"),
    "a lazy circle between two modules": ("core/store/records.py",
                                          "def _late():\n    from slmchat.core.store import store",
                                          "import circle:", "slmchat.core.store.records", "slmchat.core.store.store"),
    "a dialog importing the window": ("gui/about.py", "from slmchat.gui.main_window import MainWindow",
                                      "import circle:", "slmchat.gui.about", "slmchat.gui.main_window"),
    "a package importing one not in its rule": ("core/engine/kv_state.py",
                                                "from slmchat.core.store.store import Store",
                                                "not in slmchat.core.engine's 'May import'"),
    "a lower package importing a higher one": ("core/gguf/tables.py", "from slmchat.core.models import library",
                                               "not in slmchat.core.gguf's 'May import'"),
    "a shared module importing a package": ("core/errors.py", "from slmchat.core.gguf.check import GGUFInfo",
                                            "a shared module of core imports beyond"),
    "core importing the GUI": ("core/tasks/semantic.py", "from slmchat.gui import notices",
                               "not in slmchat.core.tasks's 'May import'"),
}


@pytest.fixture
def tree_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "slmchat"
    shutil.copytree(SOURCE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_a_rule_broken_on_purpose_is_reported(tree_copy: Path, case: str):
    file, line, *expected = BROKEN[case]
    assert violations(tree_copy) == []
    target = tree_copy / file
    target.write_text(target.read_text() + "\n\n" + line + "\n")
    found = violations(tree_copy)
    assert any(all(part in problem for part in expected) for problem in found), found


def test_two_packages_that_allow_each_other_are_reported(tree_copy: Path):
    init = tree_copy / "core" / "gguf" / "__init__.py"
    init.write_text(init.read_text().replace("May import: errors, plaintext.", "May import: errors, plaintext, models."))
    assert any("packages allowed to import each other" in problem and "slmchat.core.models" in problem
               for problem in violations(tree_copy))
