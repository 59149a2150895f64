"""The repository stands on its own: no file points outside it, at one machine, or at a tracker.

A newcomer with a fresh clone must find every fact the code rests on inside the repo (docs/),
and a benchmark figure must not carry the path of the machine it ran on.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache", ".ruff_cache"}
OUTSIDE = {
    "a folder beside the repo": re.compile(r"\.\./" + "shared"),
    "a machine's absolute path": re.compile(r"(?<![\w.])/(?:" + "work|root|home|Users" + r")/"),
    "a tracker issue number": re.compile(r"(?i)\b" + "issues?" + r" #?\d+\b"),
}


def _text_files() -> list[Path]:
    files = []
    for path in sorted(ROOT.rglob("*")):
        if path.is_file() and not SKIPPED_DIRS & set(path.relative_to(ROOT).parts) \
                and not any(part.endswith(".egg-info") for part in path.parts):
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:  # images and other binary files
                continue
            files.append(path)
    return files


def test_no_file_refers_outside_the_repository():
    found = [f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()[:100]}"
             for path in _text_files()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             for what, pattern in OUTSIDE.items() if pattern.search(line)]
    assert found == []


def test_the_check_notices_each_kind_of_reference():
    lines = {
        "a folder beside the repo": "see ../" + "shared/DESIGN.md",
        "a machine's absolute path": '"model": "/' + 'work/main/.venv/lib/model.gguf"',
        "a tracker issue number": "Goals (" + "iss" + "ue 3): listing < 50 ms",
    }
    for what, line in lines.items():
        assert OUTSIDE[what].search(line), what
    assert not any(pattern.search("the package folder slmchat/core/store/ and https://example.org/a")
                   for pattern in OUTSIDE.values())
