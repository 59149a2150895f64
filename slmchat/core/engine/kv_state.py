"""Conversations' KV states on disk, so reopening a long chat restores it instead of prefilling.

One file per (conversation, model): a small JSON header (format version, model identity, n_ctx,
llama.cpp version), the token ids the state covers, then llama.cpp's own sequence state
(`llama_state_seq_get_data`). Files are written atomically (temp file + rename), the folder is
kept under a size cap by evicting the least recently used files, and a file that does not match
the loaded model, context size or llama.cpp version is removed rather than trusted. No llama.cpp
import here: the engine hands the bytes in and out, and the GUI process can `forget` a
conversation's states without loading a model.
"""

from __future__ import annotations

import array
import hashlib
import io
import json
import logging
import os
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"SLMCHAT-KV\x00"
_HEAD = struct.Struct("<I")  # length of the JSON header that follows the magic
_SUFFIX = ".kv"
_IDENTITY_BYTES = 1 << 20  # the GGUF header, metadata and tensor table live in the first MiB
DEFAULT_CAP_BYTES = 2 * 1024**3
_STALE_TEMP_S = 600  # a temp file this old belongs to a write that died with its process


@dataclass(frozen=True)
class StateIdentity:
    """What a saved state is only valid for: this model file, this context size, this llama.cpp,
    this type of key cache (llama.cpp's state holds the cache's raw bytes)."""

    model: str  # size + sha256 of the first MiB: survives a move, changes with the content
    n_ctx: int
    llama_cpp: str
    key_cache_type: str
    format: int = FORMAT_VERSION


def model_identity(path: str | os.PathLike[str]) -> str:
    """A fingerprint of a model file that does not depend on where it lies."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_IDENTITY_BYTES))
    return f"{path.stat().st_size}-{digest.hexdigest()[:32]}"


def _key_part(text: str) -> str:
    """File-name-safe and of fixed length, whatever the conversation key contains."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class SavedState:
    """A state read back from disk: the tokens it covers and llama.cpp's bytes for them."""

    tokens: list[int]
    data: Any  # a writable buffer (bytearray) of llama_state_seq_get_data's output


class KVStateStore:
    """The folder of saved states (Paths.kv_states), capped at `cap_bytes` by LRU eviction."""

    def __init__(self, folder: Path, identity: StateIdentity, cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        self.folder = folder
        self.identity = identity
        self.cap_bytes = cap_bytes

    def path_for(self, key: str) -> Path:
        return self.folder / f"{_key_part(key)}.{_key_part(self.identity.model)}{_SUFFIX}"

    # --- writing -------------------------------------------------------------------------
    def save(self, key: str, tokens: list[int], size: int, fill: Callable[[memoryview], int]) -> Path:
        """Write a state atomically: `fill` copies `size` bytes of llama.cpp state into the buffer
        it is given and returns how many it wrote. Evicts old states beyond the cap afterwards."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.path_for(key)
        header = json.dumps({**asdict(self.identity), "tokens": len(tokens), "size": size}).encode()
        buffer = bytearray(size)
        written = fill(memoryview(buffer))
        if written != size:
            raise OSError(f"llama.cpp wrote {written} of {size} state bytes")
        temp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(_MAGIC + _HEAD.pack(len(header)) + header)
                handle.write(array.array("i", tokens).tobytes())
                handle.write(buffer)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        self.evict(keep=target)
        return target

    def evict(self, keep: Path | None = None) -> None:
        """Remove the least recently used states until the folder is under its cap, and the
        leftovers of writes a killed process never finished."""
        stale_before = time.time() - _STALE_TEMP_S
        for temp in self.folder.glob(f"*{_SUFFIX}.*.tmp"):
            try:
                if temp.stat().st_mtime < stale_before:
                    temp.unlink(missing_ok=True)
            except OSError:
                continue
        files = []
        for path in self.folder.glob(f"*{_SUFFIX}"):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for _, size, path in sorted(files):
            if total <= self.cap_bytes:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
                log.info("evicted KV state %s (%d bytes) to stay under the cap", path.name, size)

    # --- reading -------------------------------------------------------------------------
    def load(self, key: str) -> SavedState | None:
        """The saved state for `key`, or None. A file for another model, context size, format or
        llama.cpp version, or a damaged one, is deleted. Marks the file as recently used."""
        path = self.path_for(key)
        try:
            with open(path, "rb") as handle:
                state = self._read(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            log.warning("discarding KV state %s: %s", path.name, error)
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # LRU: reading counts as using
        return state

    def _read(self, handle: io.BufferedReader) -> SavedState:
        if handle.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("not a saved KV state")
        (length,) = _HEAD.unpack(handle.read(_HEAD.size))
        if length > 4096:
            raise ValueError("header too long")
        header = json.loads(handle.read(length))
        found = StateIdentity(header.get("model", ""), header.get("n_ctx", 0), header.get("llama_cpp", ""),
                              header.get("key_cache_type", "f16"), header.get("format", 0))
        if found != self.identity:
            raise ValueError(f"saved for {found}, not {self.identity}")
        count, size = int(header["tokens"]), int(header["size"])
        if not 0 < count <= self.identity.n_ctx:
            raise ValueError(f"{count} tokens do not fit a context of {self.identity.n_ctx}")
        tokens = array.array("i")
        tokens.frombytes(handle.read(count * tokens.itemsize))
        data = bytearray(size)
        if len(tokens) != count or handle.readinto(data) != size or handle.read(1):
            raise ValueError("the file is cut short or too long")
        return SavedState(tokens.tolist(), data)

    def forget(self, key: str) -> None:
        """Delete `key`'s state for this model (see `forget_everywhere` for every model)."""
        self.path_for(key).unlink(missing_ok=True)


def forget_everywhere(folder: Path, key: str) -> int:
    """Delete every saved state of a conversation, whatever model it was saved with.

    For "delete that really deletes": the GUI calls this (through `EngineClient.forget_session`,
    or directly when no model is loaded) when a conversation is deleted for good.
    Returns how many files were removed.
    """
    removed = 0
    for path in folder.glob(f"{_key_part(key)}.*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
