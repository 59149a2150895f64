"""Settings the settings dialog offers that `slmchat.settings.Settings` does not hold (yet).

Stored in the same settings table, under keys of their own, through the store's public
`read_settings` / `write_settings`. Unknown or damaged values fall back to the defaults, so a
preference can never stop the app from starting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from slmchat.core.generation import OverflowPolicy
from slmchat.core.store import Reader, Store

_PREFIX = "preferences."


@dataclass(frozen=True)
class Preferences:
    font_size: float = 10.5  # points, for the whole window
    context_size: int = 4096  # tokens asked of the engine (it clamps to the model and memory)
    overflow: OverflowPolicy = OverflowPolicy.TRIM
    gpu_layers: int | None = None  # None: all layers when a GPU can take them

    @classmethod
    def load(cls, reader: Reader) -> "Preferences":
        stored = reader.read_settings()
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            key = _PREFIX + field.name
            if key in stored:
                values[field.name] = stored[key]
        try:
            preferences = cls(**values)
            return dataclasses.replace(preferences, overflow=OverflowPolicy(preferences.overflow))
        except (TypeError, ValueError):
            return cls()

    def save(self, store: Store) -> None:
        values = dataclasses.asdict(self)
        values["overflow"] = OverflowPolicy(self.overflow).value
        store.write_settings({_PREFIX + key: value for key, value in values.items()})
