"""pyproject.toml says what a plain `pip install .` installs: every package, every asset, every
third-party module the code imports. These read the source tree and pyproject; the install
itself is proved by test_plain_install.py."""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _normalised(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def _asset_package(folder: Path) -> str:
    return ".".join(["slmchat", "assets", *folder.relative_to(ROOT / "assets").parts])


def test_pyproject_lists_every_slmchat_package_and_every_assets_folder() -> None:
    code = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "slmchat").rglob("__init__.py")}
    assets = {_asset_package(folder) for folder in [ROOT / "assets", *(ROOT / "assets").rglob("*")]
              if folder.is_dir() and folder.name != "__pycache__"}
    assert set(SETUPTOOLS["packages"]) == code | assets
    assert SETUPTOOLS["package-dir"] == {"slmchat.assets": "assets"}


def test_every_file_in_assets_is_matched_by_package_data() -> None:
    patterns = SETUPTOOLS["package-data"]
    unmatched = [str(path.relative_to(ROOT)) for path in (ROOT / "assets").rglob("*") if path.is_file()
                 and not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns.get(_asset_package(path.parent), []))]
    assert not unmatched, f"not installed by `pip install .`: {unmatched}"


def third_party_imports(package: Path) -> dict[str, set[str]]:
    """Top-level module names imported anywhere under `package` (not stdlib, not slmchat),
    each with the files importing it."""
    found: dict[str, set[str]] = {}
    for source in package.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top != "slmchat":
                    found.setdefault(top, set()).add(str(source.relative_to(ROOT)))
    return found


def test_every_third_party_module_slmchat_imports_is_a_declared_dependency() -> None:
    declared = {_normalised(re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0])
                for requirement in PYPROJECT["project"]["dependencies"]}
    providers = packages_distributions()
    undeclared = {}
    for module, files in third_party_imports(ROOT / "slmchat").items():
        distributions = {_normalised(name) for name in providers.get(module, [])}
        if not distributions & declared:
            undeclared[module] = (sorted(distributions) or ["not installed"], sorted(files))
    assert not undeclared, f"imported but not in pyproject's dependencies: {undeclared}"


def test_the_readme_promises_the_python_that_pyproject_requires() -> None:
    floor = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert sys.version_info[:2] >= tuple(int(part) for part in floor.split("."))
    named = set(re.findall(r"Python (3\.\d+)\+", (ROOT / "README.md").read_text(encoding="utf-8")))
    assert named <= {floor}, f"README.md promises Python {sorted(named)}+, pyproject requires {floor}+"
