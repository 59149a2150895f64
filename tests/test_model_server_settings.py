"""The model servers the user added are kept in the settings, and a damaged entry never stops the app."""

from __future__ import annotations

import pytest

from slmchat.core.store.store import Store
from slmchat.settings import Settings, load_settings, save_settings

SERVERS = ({"url": "http://192.168.1.20:11434/v1", "key": ""}, {"url": "https://gpu.example.org/v1", "key": "k"})


def test_the_added_servers_and_their_keys_round_trip_in_order(tmp_path):
    with Store(tmp_path / "chats.db") as store:
        save_settings(store, Settings(model_servers=SERVERS))
        assert load_settings(store).model_servers == SERVERS


@pytest.mark.parametrize("damaged", [
    "http://192.168.1.20:11434/v1",  # a bare string
    [{"key": "k"}],  # an entry without its address
    [["http://host/v1", "k"]],  # an entry that is not a mapping
    42,
])
def test_damaged_servers_fall_back_to_none_and_the_app_still_starts(tmp_path, damaged):
    with Store(tmp_path / "chats.db") as store:
        store.write_settings({"model_servers": damaged, "theme": "dark"})
        loaded = load_settings(store)
    assert (loaded.model_servers, loaded.theme) == ((), "dark")
