"""The curated model list (assets/catalog.json): typed, validated, and able to pick a model.

The JSON is the one source of truth for catalog facts. Loading validates it as a whole and
refuses a catalog with a broken entry, so the GUI never shows a card it cannot download.
Facts the catalog could not confirm stay `None` and are named in `unconfirmed`.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmchat import paths
from slmchat.core.errors import SlmchatError
from slmchat.core.models import hardware

SCHEMA_VERSION = 1
# Context used to judge a model before it is downloaded: a comfortable conversation.
RECOMMEND_CONTEXT = 4096

_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*\.gguf$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CatalogError(SlmchatError):
    """The model list shipped with the app is damaged (a bug in a release, never user data)."""


class ModelRole(str, enum.Enum):
    CHAT = "chat"
    COMPLETION = "completion"
    TRANSLATE_SUMMARIZE = "translate/summarize"
    EMBED = "embed"
    CLASSIFY = "classify"


@dataclass(frozen=True)
class CatalogFile:
    """One downloadable (or bundled) GGUF of a model at one quantization."""

    quant: str
    file: str
    repo: str | None  # None only for a file that ships with the app
    size_bytes: int | None = None  # exact, or None when not confirmed
    approx_size_bytes: int | None = None  # rounded size a hub page showed
    sha256: str | None = None
    bundled: bool = False
    unconfirmed: tuple[str, ...] = ()
    source: str = ""

    @property
    def best_size(self) -> int | None:
        """The exact size when known, else the approximate one (for fit labels before download)."""
        return self.size_bytes if self.size_bytes is not None else self.approx_size_bytes


@dataclass(frozen=True)
class CatalogShape:
    """Architecture facts enough to estimate memory before the GGUF exists on disk.

    Implements `hardware.ModelShape`; `tensor_bytes` is the file size, a slight overestimate.
    """

    tensor_bytes: int
    block_count: int
    head_count: int
    head_count_kv: int
    embedding_length: int
    key_length: int | None
    value_length: int | None
    vocab_size: int
    context_length: int | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    family: str
    display_name: str
    parameters: int
    license: str
    license_url: str | None
    gated: bool
    original_repo: str
    role: ModelRole
    architecture: str | None  # llama.cpp's name; None when llama.cpp has none
    context_length: int | None
    description: str
    supported: bool
    unsupported_reason: str = ""
    default_quant: str | None = None
    files: tuple[CatalogFile, ...] = ()
    convert_from: str | None = None  # original weights the app converts itself (no GGUF on the hub)
    shape: Mapping[str, int] = field(default_factory=dict)
    unconfirmed: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    def file_for(self, quant: str | None = None) -> CatalogFile | None:
        """The file of `quant` (default quantization when None), or None if not offered."""
        wanted = quant or self.default_quant
        return next((f for f in self.files if f.quant == wanted), None)

    @property
    def default_file(self) -> CatalogFile | None:
        return self.file_for(None)

    @property
    def bundled_file(self) -> CatalogFile | None:
        return next((f for f in self.files if f.bundled), None)

    def model_shape(self, file: CatalogFile | None = None) -> CatalogShape | None:
        """What `hardware.estimate_memory` needs, or None when size or shape is unknown."""
        file = file or self.default_file
        size = file.best_size if file else None
        if size is None or not self.shape:
            return None
        s = self.shape
        return CatalogShape(
            tensor_bytes=size,
            block_count=s["block_count"],
            head_count=s["head_count"],
            head_count_kv=s["head_count_kv"],
            embedding_length=s["embedding_length"],
            key_length=s.get("key_length"),
            value_length=s.get("value_length"),
            vocab_size=s["vocab_size"],
            context_length=self.context_length,
            metadata={"catalog.feed_forward_length": s["feed_forward_length"]}
            if "feed_forward_length" in s else {},
        )


@dataclass(frozen=True)
class Catalog:
    schema_version: int
    entries: tuple[CatalogEntry, ...]

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, model_id: str) -> CatalogEntry:
        """The entry with this id; KeyError names the id when there is none."""
        for entry in self.entries:
            if entry.id == model_id:
                return entry
        raise KeyError(model_id)

    def by_role(self, role: ModelRole) -> list[CatalogEntry]:
        return [e for e in self.entries if e.role is role]

    def find_file(self, repo: str, file: str) -> tuple[CatalogEntry, CatalogFile] | None:
        """Which catalog entry a hub file belongs to (for downloads started by repo and name)."""
        for entry in self.entries:
            for f in entry.files:
                if f.repo == repo and f.file == file:
                    return entry, f
        return None

    def recommend(self, machine: hardware.Machine) -> CatalogEntry:
        """The best chat model for this machine: the largest that fits, else the smallest.

        "Fits" is judged at RECOMMEND_CONTEXT tokens from the catalog's own size and shape
        facts, and includes speed: on a CPU-only machine a model that would write slower than
        people read is not recommended however much RAM is free. Models whose size is unknown
        are skipped rather than guessed.
        """
        candidates = []
        for entry in self.entries:
            if entry.role is not ModelRole.CHAT or not entry.supported:
                continue
            shape = entry.model_shape()
            if shape is None:
                continue
            n_ctx = min(RECOMMEND_CONTEXT, entry.context_length or RECOMMEND_CONTEXT)
            label = hardware.fit(hardware.estimate_memory(shape, n_ctx), machine).label
            candidates.append((label, entry))
        fitting = [e for label, e in candidates if label is hardware.FitLabel.FITS]
        if fitting:
            return max(fitting, key=lambda e: e.parameters)
        if not candidates:
            raise CatalogError("The model list has no chat model the app can size.")
        return min((e for _, e in candidates), key=lambda e: e.parameters)


def default_path() -> Path:
    return paths.assets_dir() / "catalog.json"


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate the catalog; raises CatalogError saying what is wrong and where."""
    path = Path(path) if path is not None else default_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CatalogError(f"The model list {path} cannot be read: {exc}") from exc
    return parse_catalog(raw)


def parse_catalog(raw: Any) -> Catalog:
    """Validate a decoded catalog document (split from loading so tests need no files)."""
    if not isinstance(raw, dict):
        raise CatalogError("The model list is not a JSON object.")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CatalogError(
            f"The model list has schema version {version!r}; this app reads version {SCHEMA_VERSION}."
        )
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise CatalogError("The model list has no 'models'.")
    entries = tuple(_entry(item, index) for index, item in enumerate(models))
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise CatalogError(f"The model list has the id {entry.id!r} twice.")
        seen.add(entry.id)
    return Catalog(schema_version=version, entries=entries)


# --- validation of one entry --------------------------------------------------------------
_REQUIRED = ("id", "family", "display_name", "parameters", "license", "gated", "original_repo",
             "role", "description", "supported")


def _entry(item: Any, index: int) -> CatalogEntry:
    where = f"model #{index + 1}"
    if not isinstance(item, dict):
        raise CatalogError(f"The model list's {where} is not an object.")
    where = f"model {item.get('id', '#' + str(index + 1))!r}"
    missing = [key for key in _REQUIRED if item.get(key) is None]
    if missing:
        raise CatalogError(f"The model list's {where} lacks {', '.join(missing)}.")
    model_id = item["id"]
    if not isinstance(model_id, str) or not _ID.match(model_id):
        raise CatalogError(f"The model list's {where} has an unsafe id.")
    _check(isinstance(item["parameters"], int) and item["parameters"] > 0, where, "a positive integer 'parameters'")
    _check(isinstance(item["gated"], bool), where, "a true/false 'gated'")
    _check(_is_repo(item["original_repo"]), where, "a safe 'original_repo'")
    try:
        role = ModelRole(item["role"])
    except ValueError:
        allowed = ", ".join(r.value for r in ModelRole)
        raise CatalogError(f"The model list's {where} has role {item['role']!r}; allowed: {allowed}.") from None
    files = tuple(_file(f, where) for f in item.get("files") or [])
    quants = [f.quant for f in files]
    _check(len(quants) == len(set(quants)), where, "each quantization once")
    convert = item.get("convert_from")
    convert_repo = convert.get("repo") if isinstance(convert, dict) else None
    supported = item["supported"]
    default_quant = item.get("default_quant")
    if supported:
        _check(bool(item.get("architecture")), where, "a llama.cpp 'architecture'")
        _check(bool(default_quant), where, "a 'default_quant'")
        if convert_repo is None:
            _check(default_quant in quants, where, f"a file for its default quantization {default_quant!r}")
        else:
            _check(_is_repo(convert_repo), where, "a safe 'convert_from' repo")
    else:
        _check(bool(item.get("unsupported_reason")), where, "an 'unsupported_reason' (it is unsupported)")
    shape = item.get("shape") or {}
    _check(all(isinstance(v, int) and v > 0 for v in shape.values()), where, "positive integers in 'shape'")
    context = item.get("context_length")
    _check(context is None or (isinstance(context, int) and context > 0), where, "a positive 'context_length'")
    return CatalogEntry(
        id=model_id,
        family=item["family"],
        display_name=item["display_name"],
        parameters=item["parameters"],
        license=item["license"],
        license_url=item.get("license_url"),
        gated=item["gated"],
        original_repo=item["original_repo"],
        role=role,
        architecture=item.get("architecture"),
        context_length=context,
        description=item["description"],
        supported=supported,
        unsupported_reason=item.get("unsupported_reason") or "",
        default_quant=default_quant,
        files=files,
        convert_from=convert_repo,
        shape=dict(shape),
        unconfirmed=tuple(item.get("unconfirmed") or ()),
        sources=tuple(item.get("sources") or ()),
    )


def _file(item: Any, where: str) -> CatalogFile:
    _check(isinstance(item, dict), where, "objects in 'files'")
    name, repo, bundled = item.get("file"), item.get("repo"), bool(item.get("bundled", False))
    _check(isinstance(name, str) and _is_safe_file(name), where, f"a safe file name (got {name!r})")
    _check(bool(item.get("quant")), where, f"a 'quant' for {name}")
    _check(repo is not None or bundled, where, f"a repo for {name} (only bundled files have none)")
    _check(repo is None or _is_repo(repo), where, f"a safe repo for {name} (got {repo!r})")
    for key in ("size_bytes", "approx_size_bytes"):
        value = item.get(key)
        _check(value is None or (isinstance(value, int) and value > 0), where, f"an integer byte count in {key} of {name}")
    sha = item.get("sha256")
    _check(sha is None or (isinstance(sha, str) and _SHA256.match(sha) is not None), where, f"a hex sha256 for {name}")
    return CatalogFile(
        quant=item["quant"],
        file=name,
        repo=repo,
        size_bytes=item.get("size_bytes"),
        approx_size_bytes=item.get("approx_size_bytes"),
        sha256=sha,
        bundled=bundled,
        unconfirmed=tuple(item.get("unconfirmed") or ()),
        source=item.get("source") or "",
    )


def _is_repo(value: Any) -> bool:
    return isinstance(value, str) and _REPO.match(value) is not None and ".." not in value


def _is_safe_file(name: str) -> bool:
    """A bare file name: no folders, no '..', nothing a hostile hub could use to escape."""
    return _FILE.match(name) is not None and ".." not in name


def _check(ok: bool, where: str, needs: str) -> None:
    if not ok:
        raise CatalogError(f"The model list's {where} needs {needs}.")
