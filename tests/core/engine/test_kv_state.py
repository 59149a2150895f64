"""Saved KV states on disk: what is kept, what is refused and removed, and how the folder stays small.

These tests hand the store plain bytes; tests/test_engine.py and tests/test_engine_process.py
prove with llama.cpp's own counters that a restored state spares the prompt evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slmchat.core.engine.kv_state import (
    KVStateStore,
    StateIdentity,
    forget_everywhere,
    model_identity,
)

IDENTITY = StateIdentity(model="1234-abcd", n_ctx=4096, llama_cpp="0.3.36", key_cache_type="q8_0")


def store(folder: Path, identity: StateIdentity = IDENTITY, cap: int = 1 << 30) -> KVStateStore:
    return KVStateStore(folder, identity, cap)


def save(kv: KVStateStore, key: str, tokens: list[int], payload: bytes) -> Path:
    def fill(buffer: memoryview) -> int:
        buffer[:] = payload
        return len(payload)

    return kv.save(key, tokens, len(payload), fill)


def test_a_saved_state_comes_back_with_its_tokens_and_bytes(tmp_path: Path) -> None:
    kv = store(tmp_path)
    save(kv, "conversation-1", [1, 2, 3, 70000], b"llama state bytes")
    again = store(tmp_path).load("conversation-1")  # a fresh store: as after a restart
    assert again is not None
    assert again.tokens == [1, 2, 3, 70000]
    assert bytes(again.data) == b"llama state bytes"
    assert store(tmp_path).load("conversation-2") is None


@pytest.mark.parametrize("other", [
    StateIdentity(model="5678-ef01", n_ctx=4096, llama_cpp="0.3.36", key_cache_type="q8_0"),
    StateIdentity(model="1234-abcd", n_ctx=2048, llama_cpp="0.3.36", key_cache_type="q8_0"),
    StateIdentity(model="1234-abcd", n_ctx=4096, llama_cpp="0.3.37", key_cache_type="q8_0"),
    StateIdentity(model="1234-abcd", n_ctx=4096, llama_cpp="0.3.36", key_cache_type="f16"),
    StateIdentity(model="1234-abcd", n_ctx=4096, llama_cpp="0.3.36", key_cache_type="q8_0", format=0),
], ids=["other-model", "other-context", "other-llama-cpp", "other-key-cache", "other-format"])
def test_a_state_saved_under_other_conditions_is_ignored_and_removed(tmp_path: Path, other: StateIdentity) -> None:
    path = save(store(tmp_path, other), "conversation-1", [1, 2], b"xx")
    mine = store(tmp_path)
    # Another model's state has another file name; put it where this model would look.
    if path != mine.path_for("conversation-1"):
        path.rename(mine.path_for("conversation-1"))
    assert mine.load("conversation-1") is None
    assert not mine.path_for("conversation-1").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "trailing"])
def test_a_damaged_state_is_removed_not_trusted(tmp_path: Path, damage: str) -> None:
    kv = store(tmp_path)
    path = save(kv, "c", list(range(100)), b"s" * 1000)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:-10], "garbage": os.urandom(len(data)),
                      "trailing": data + b"x"}[damage])
    assert kv.load("c") is None
    assert not path.exists()


def test_more_tokens_than_the_context_holds_is_refused(tmp_path: Path) -> None:
    small = StateIdentity(model="1234-abcd", n_ctx=8, llama_cpp="0.3.36", key_cache_type="q8_0")
    kv = store(tmp_path, small)
    save(kv, "c", list(range(9)), b"s")
    assert kv.load("c") is None


def test_the_folder_stays_under_its_cap_by_dropping_the_least_recently_used(tmp_path: Path) -> None:
    kv = store(tmp_path, cap=3 * 1200)  # room for three states of ~1150 bytes
    for index, key in enumerate(["a", "b", "c"]):
        path = save(kv, key, [1], b"s" * 1000)
        os.utime(path, (1000 + index, 1000 + index))  # a before b before c
    assert kv.load("a") is not None  # reading a makes it the most recently used
    save(kv, "d", [1], b"s" * 1000)  # over the cap: the least recently used (b) goes
    assert [kv.path_for(k).exists() for k in "abcd"] == [True, False, True, True]


def test_a_state_bigger_than_the_cap_is_still_kept_alone(tmp_path: Path) -> None:
    kv = store(tmp_path, cap=10)
    save(kv, "old", [1], b"s" * 100)
    save(kv, "new", [1], b"s" * 100)
    assert not kv.path_for("old").exists() and kv.path_for("new").exists()


def test_a_failed_write_leaves_the_previous_state_and_no_temporary_file(tmp_path: Path) -> None:
    kv = store(tmp_path)
    save(kv, "c", [1, 2], b"good")

    def broken(buffer: memoryview) -> int:
        raise OSError("disk full")

    with pytest.raises(OSError):
        kv.save("c", [1, 2, 3], 4, broken)
    state = kv.load("c")
    assert state is not None and bytes(state.data) == b"good"
    assert [p.name for p in tmp_path.iterdir()] == [kv.path_for("c").name]


def test_leftovers_of_a_killed_write_are_cleared_once_stale(tmp_path: Path) -> None:
    kv = store(tmp_path)
    stale = tmp_path / (kv.path_for("c").name + ".4242.tmp")
    fresh = tmp_path / (kv.path_for("d").name + ".4243.tmp")
    for path in (stale, fresh):
        path.write_bytes(b"half a state")
    os.utime(stale, (1000, 1000))
    save(kv, "e", [1], b"s")
    assert not stale.exists() and fresh.exists()  # a fresh one may be a write in progress


def test_forgetting_a_conversation_deletes_its_states_for_every_model(tmp_path: Path) -> None:
    models = [StateIdentity(model=f"{n}-model", n_ctx=4096, llama_cpp="0.3.36", key_cache_type="q8_0") for n in range(3)]
    for identity in models:
        save(store(tmp_path, identity), "deleted conversation", [1], b"s")
    kept = save(store(tmp_path), "other conversation", [1], b"s")
    assert forget_everywhere(tmp_path, "deleted conversation") == 3
    assert [p for p in tmp_path.iterdir()] == [kept]


def test_keys_never_escape_the_folder(tmp_path: Path) -> None:
    kv = store(tmp_path / "kv")
    path = save(kv, "../../etc/passwd\x00/\\:*", [1], b"s")
    assert path.parent == tmp_path / "kv"


def test_model_identity_follows_the_content_not_the_place(tmp_path: Path) -> None:
    first = tmp_path / "a.gguf"
    first.write_bytes(b"GGUF" + b"\x01" * 5000)
    moved = tmp_path / "elsewhere.gguf"
    moved.write_bytes(first.read_bytes())
    changed = tmp_path / "changed.gguf"
    changed.write_bytes(b"GGUF" + b"\x02" * 5000)
    assert model_identity(first) == model_identity(moved) != model_identity(changed)
