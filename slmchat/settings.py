"""User settings: a dataclass persisted in the conversation database. (Where the data folder,
and so the database, is lives in a small config file: see `slmchat.paths`.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from slmchat.core.generation import GenerationSettings, OverflowPolicy
from slmchat.core.store.records import settings_from_dict
from slmchat.core.store.store import Reader, Store


@dataclass(frozen=True)
class Settings:
    """What the user chose in the settings dialog. Defaults are what a fresh install uses."""

    theme: str = "system"  # "system", "light" or "dark"
    default_model: str = ""  # path of the model to load at start-up; "" = the starter model
    default_persona_id: int | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    send_on_enter: bool = True  # Enter sends, Shift+Enter adds a line (else Ctrl+Enter sends)
    show_stats: bool = True  # tokens/s and token counts under each reply
    n_threads: int | None = None  # None: decided from the hardware
    font_size: float = 10.5  # points, for the whole window
    context_size: int = 4096  # tokens asked of the engine (it clamps to the model and memory)
    overflow: OverflowPolicy = OverflowPolicy.TRIM
    gpu_layers: int | None = None  # None: all layers when a GPU can take them


# Before these four joined Settings, the GUI stored them under keys of its own; read those when
# the new key is missing, so an upgrade keeps the user's choices.
_OLD_PREFIX = "preferences."
_TYPED = {
    "generation": settings_from_dict,
    "overflow": OverflowPolicy,
    "font_size": float,
    "context_size": int,
}


def load_settings(reader: Reader) -> Settings:
    """The stored settings; missing keys take their defaults, unknown keys (from a newer
    version) are ignored and a damaged value falls back to its default, so settings never stop
    the app from starting."""
    stored = reader.read_settings()
    values: dict[str, Any] = {}
    for setting in dataclasses.fields(Settings):
        key = setting.name if setting.name in stored else _OLD_PREFIX + setting.name
        if key not in stored:
            continue
        value = stored[key]
        try:
            values[setting.name] = _TYPED[setting.name](value) if setting.name in _TYPED else value
        except (TypeError, ValueError):
            continue
    return Settings(**values)


def save_settings(store: Store, settings: Settings) -> None:
    store.write_settings(dataclasses.asdict(settings))
