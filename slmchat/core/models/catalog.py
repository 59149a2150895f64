"""The curated model list (assets/catalog.json): typed, validated, and able to pick a model.

The JSON is the one source of truth for catalog facts. Loading validates it as a whole and
refuses a catalog with a broken entry, so the GUI never shows a card it cannot download.
Facts the catalog could not confirm stay `None` and are named in `unconfirmed`.

Every downloadable file is *pinned* (`verified`): the repo, the commit it was checked at, its
exact size and sha256, taken together from one commit, so a Download fetches those bytes or
nothing, however the repo changes later. A file that could not be pinned says so
(`unverified_reason`); its first download is recorded and later ones must match it. The GGUF
header of a downloaded or imported catalog file is checked against its entry (`header_mismatch`),
so the wrong model under the right name is refused even when its bytes hash as published.
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
from slmchat.core.errors import SlmchatError, WrongModel
from slmchat.core.models import hardware

SCHEMA_VERSION = 2
# Context used to judge a model before it is downloaded: a comfortable conversation.
RECOMMEND_CONTEXT = 4096

_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*\.gguf$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_URL = re.compile(r"^https://[^\s]+$")
# A GGUF's parameter count (its tensors' elements) may differ from the catalog's by a tied output
# matrix stored twice or an extra norm; another model of the family differs by far more (135M/360M).
PARAMETER_TOLERANCE = 0.05
# Shape facts compared exactly between a GGUF header and its catalog entry.
_HEADER_SHAPE = ("block_count", "embedding_length", "head_count", "head_count_kv")


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
    """One downloadable (or bundled) GGUF of a model at one quantization.

    `verified` files are pinned: `revision` (the commit they were checked at; None only for a
    bundled file), exact `size_bytes` and `sha256`. An unverified file says why in
    `unverified_reason`, which a card shows beside its Download button.
    """

    quant: str
    file: str
    repo: str | None  # None only for a file that ships with the app
    size_bytes: int | None = None  # exact, or None when not confirmed
    approx_size_bytes: int | None = None  # rounded size a hub page showed
    sha256: str | None = None
    bundled: bool = False
    unconfirmed: tuple[str, ...] = ()
    source: str = ""
    revision: str | None = None  # 40-hex commit the pin was taken at
    verified: bool = False
    unverified_reason: str = ""

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
    # The original model's terms, when its publisher gates it (Llama 3.2, Gemma 2, Mistral Nemo):
    # whoever uses a copy from an open GGUF repo is still bound by them. None when not gated.
    gated_terms_url: str | None = None
    license_note: str = ""  # what the licence (or its absence) means for the user, when not plain

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

    def entries_for_filename(self, file: str) -> list[CatalogEntry]:
        """The entries that name a hub file `file` (in any repo): a local file so named claims to be one."""
        return [e for e in self.entries if any(f.file == file and not f.bundled for f in e.files)]

    def check_named_file(self, filename: str, info: Any) -> None:
        """Raise WrongModel when a file named like a catalog file (`info`: its GGUF header) holds
        another model; files named like no catalog file pass (for imports and downloads alike)."""
        entries = self.entries_for_filename(filename)
        if entries and all(header_mismatch(entry, info) is not None for entry in entries):
            check_header(entries[0], info, filename)

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


def header_mismatch(entry: CatalogEntry, info: Any) -> str | None:
    """Why a GGUF header (`GGUFInfo`) is not `entry`'s model, or None when it fits.

    Compared: llama.cpp's architecture, the shape the catalog records, and the parameter count
    (within PARAMETER_TOLERANCE). The trained context is not compared: GGUF converters write the
    position table's length, which can differ from the length the model card states.
    """
    differences = []
    if entry.architecture and info.architecture != entry.architecture:
        differences.append(f"architecture {info.architecture!r}, expected {entry.architecture!r}")
    for key in _HEADER_SHAPE:
        expected = entry.shape.get(key)
        if expected is not None and getattr(info, key) != expected:
            differences.append(f"{key} {getattr(info, key)}, expected {expected}")
    if abs(info.parameter_count - entry.parameters) > PARAMETER_TOLERANCE * entry.parameters:
        differences.append(f"{info.parameter_count:,} parameters, expected {entry.parameters:,}")
    return "; ".join(differences) or None


def check_header(entry: CatalogEntry, info: Any, filename: str) -> None:
    """Raise WrongModel when the file `filename` (header `info`) is not `entry`'s model."""
    problem = header_mismatch(entry, info)
    if problem is not None:
        raise WrongModel(
            f"{filename} is named like {entry.display_name} but holds a different model, so slmchat "
            "refused it. Get the file from the model's own page, or rename your file if it is another model.",
            detail=f"{entry.id}: {problem}",
        )


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
    terms = item.get("gated_terms_url")
    _check(terms is None or (isinstance(terms, str) and _URL.match(terms) is not None), where, "an https 'gated_terms_url'")
    license_note = item.get("license_note") or ""
    _check(item["license"] not in ("unknown", "other") or bool(license_note), where,
           "a 'license_note' saying what its undeclared licence means")
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
        gated_terms_url=terms,
        license_note=license_note,
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
    revision = item.get("revision")
    _check(revision is None or (isinstance(revision, str) and _COMMIT.match(revision) is not None), where,
           f"a 40-hex commit as the revision of {name}")
    verified = item.get("verified")
    _check(isinstance(verified, bool), where, f"a true/false 'verified' for {name}")
    if verified:
        _check(sha is not None and item.get("size_bytes") is not None, where, f"the exact size and sha256 of verified {name}")
        _check(revision is not None or bundled, where, f"the revision verified {name} was checked at")
    else:
        _check(bool(item.get("unverified_reason")), where, f"an 'unverified_reason' for {name}")
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
        revision=revision,
        verified=verified,
        unverified_reason="" if verified else item["unverified_reason"],
    )


def _is_repo(value: Any) -> bool:
    return isinstance(value, str) and _REPO.match(value) is not None and ".." not in value


def _is_safe_file(name: str) -> bool:
    """A bare file name: no folders, no '..', nothing a hostile hub could use to escape."""
    return _FILE.match(name) is not None and ".." not in name


def _check(ok: bool, where: str, needs: str) -> None:
    if not ok:
        raise CatalogError(f"The model list's {where} needs {needs}.")
