"""sqlite-utils as the store uses it, imported without numpy.

sqlite-utils imports numpy whenever it is installed (it is, for the `gguf` package and the
embedding tasks), only to map numpy scalar types to column types; the store never inserts numpy
values. numpy and its OpenBLAS cost the window's process ~19 MB of RSS and ~30 ms of start-up,
so while sqlite-utils is first imported numpy is made unimportable; anything importing numpy
later (semantic search, the task models) gets it as usual. Every store module imports
`Database` from here, so whichever is imported first does this.
"""

from __future__ import annotations

import importlib
import sys


def _import_without_numpy() -> None:
    if "sqlite_utils" in sys.modules or "numpy" in sys.modules:
        return  # too late to matter, or numpy is loaded anyway
    sys.modules["numpy"] = None  # type: ignore[assignment]  # makes `import numpy` raise ImportError
    try:
        importlib.import_module("sqlite_utils")
    finally:
        del sys.modules["numpy"]


_import_without_numpy()

from sqlite_utils import Database  # noqa: E402
from sqlite_utils.migrations import Migrations  # noqa: E402

__all__ = ["Database", "Migrations"]
