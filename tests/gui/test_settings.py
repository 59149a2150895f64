"""The window's settings live in one place, `slmchat.settings.Settings`, and survive upgrades."""

from __future__ import annotations

from slmchat.core.generation import OverflowPolicy
from slmchat.core.store.store import Store
from slmchat.settings import Settings, load_settings, save_settings


def test_engine_and_text_size_choices_round_trip_with_the_other_settings(tmp_path):
    with Store(tmp_path / "chats.db") as store:
        chosen = Settings(theme="dark", font_size=13.0, context_size=2048, overflow=OverflowPolicy.REFUSE,
                          gpu_layers=12)
        save_settings(store, chosen)
        assert load_settings(store) == chosen


def test_choices_saved_by_the_previous_version_are_kept(tmp_path):
    """They were stored as "preferences.<name>" before they joined Settings."""
    with Store(tmp_path / "chats.db") as store:
        store.write_settings({"preferences.context_size": 8192, "preferences.overflow": "refuse",
                              "preferences.font_size": 12.5, "preferences.gpu_layers": 0})
        loaded = load_settings(store)
    assert (loaded.context_size, loaded.overflow, loaded.font_size, loaded.gpu_layers) == (
        8192, OverflowPolicy.REFUSE, 12.5, 0)


def test_a_damaged_value_falls_back_to_its_default_and_the_app_still_starts(tmp_path):
    with Store(tmp_path / "chats.db") as store:
        store.write_settings({"overflow": "sometimes", "context_size": "lots", "theme": "dark"})
        loaded = load_settings(store)
    assert (loaded.overflow, loaded.context_size, loaded.theme) == (OverflowPolicy.TRIM, 4096, "dark")


def test_the_window_asks_the_engine_for_the_saved_context_size(qtbot, make_window):
    window = make_window(context_size=1536)
    model = next(m for m in window.library.list() if m.usable)
    assert window.engine_config(model).n_ctx == 1536
