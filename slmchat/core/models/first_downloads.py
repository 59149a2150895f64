"""What the first download of an unpinned catalog file got, so every later download gets the same bytes.

The catalog pins what it could confirm (commit, size, sha256). For a file it could not pin, the
first download is trusted and remembered here — commit, size and sha256 — and later downloads
fetch that commit and accept only those bytes, even after the model was removed (the library's
registry forgets a removed model; this file does not). Someone who re-uploads the file under the
same name cannot swap the bytes of a user's later download.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

FILE_NAME = "first_downloads.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class FirstDownload:
    revision: str  # the 40-hex commit the first download came from
    size: int
    sha256: str


class FirstDownloads:
    """A small JSON file of `repo/file -> FirstDownload`, written atomically under a lock."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / FILE_NAME
        self._lock = FileLock(str(self._path) + ".lock")

    def get(self, repo_id: str, filename: str) -> FirstDownload | None:
        """The recorded first download, or None (also for an entry someone damaged by hand)."""
        item = self._load().get(f"{repo_id}/{filename}")
        try:
            record = FirstDownload(str(item["revision"]), int(item["size"]), str(item["sha256"]))
        except (TypeError, KeyError, ValueError):
            return None
        if not (_COMMIT.fullmatch(record.revision) and _SHA256.fullmatch(record.sha256) and record.size > 0):
            return None
        return record

    def record(self, repo_id: str, filename: str, first: FirstDownload) -> None:
        """Remember `first` unless a first download of this file is recorded already."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            records = self._load()
            records.setdefault(f"{repo_id}/{filename}", asdict(first))
            handle, temporary = tempfile.mkstemp(dir=self._path.parent, prefix=FILE_NAME, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(records, out, indent=1, sort_keys=True)
            os.replace(temporary, self._path)

    def _load(self) -> dict:
        try:
            records = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return records if isinstance(records, dict) else {}
