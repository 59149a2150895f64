"""The models on disk — downloaded, imported and the bundled starter — each checked with gguf/check.py.

The library owns two folders: `Paths.models` (finished files, only ever moved in after they were
verified and validated) and `Paths.downloads` (partial downloads with a small state file and a lock,
kept across restarts so a download can continue). A JSON registry under `Paths.data` records what
each model is and where it came from; the GGUF facts are read from the files themselves.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from filelock import FileLock, Timeout

from slmchat.core.errors import (
    CannotRemoveModel,
    DownloadAlreadyRunning,
    ModelFileError,
    NotEnoughDiskSpace,
    UnknownModel,
)
from slmchat.core.gguf.check import GGUFInfo, check_gguf
from slmchat.core.models.catalog import load_catalog
from slmchat.paths import Paths, starter_model

log = logging.getLogger(__name__)

REGISTRY_FILE = "models.json"
REGISTRY_VERSION = 1
PART_SUFFIX = ".part"
IMPORTED_FOLDER = "imported"


class ModelSource(str, enum.Enum):
    STARTER = "starter"
    DOWNLOADED = "downloaded"
    IMPORTED = "imported"


@dataclass(frozen=True)
class LibraryModel:
    """One model the user has. `info` is None when the file can no longer be used (`problem` says why)."""

    id: str
    path: Path
    source: ModelSource
    info: GGUFInfo | None
    problem: str | None = None
    owned: bool = False  # the file lives in our models folder and goes when the model is removed
    repo_id: str | None = None
    filename: str | None = None
    sha256: str | None = None
    commit: str | None = None

    @property
    def usable(self) -> bool:
        return self.info is not None


@dataclass(frozen=True)
class PartialState:
    """What a partial file is becoming: checked on resume so bytes of an older upload are never reused."""

    repo_id: str
    filename: str
    sha256: str
    size: int
    commit: str | None = None


@dataclass(frozen=True)
class UnfinishedDownload:
    """A partial download on disk (paused, cut off, or left by a closed app) that can continue."""

    state: PartialState
    done: int  # bytes already on disk


@dataclass(frozen=True)
class PartialDownload:
    """A download in progress or paused: `<name>.part` holds the bytes, `.part.json` the state."""

    part: Path

    @property
    def state_path(self) -> Path:
        return self.part.with_name(self.part.name + ".json")

    @property
    def lock_path(self) -> Path:
        return self.part.with_name(self.part.name + ".lock")

    def size(self) -> int:
        try:
            return self.part.stat().st_size
        except FileNotFoundError:
            return 0

    def load_state(self) -> PartialState | None:
        try:
            return PartialState(**json.loads(self.state_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def prepare(self, state: PartialState) -> int:
        """Keep the bytes already here if they belong to `state`, else start empty. Returns bytes kept."""
        kept = self.size()
        if self.load_state() != state or kept > state.size:
            kept = 0
        self.part.parent.mkdir(parents=True, exist_ok=True)
        with self.part.open("ab") as handle:
            handle.truncate(kept)
        _write_json_atomic(self.state_path, asdict(state))
        return kept

    def discard(self) -> None:
        for path in (self.part, self.state_path):
            path.unlink(missing_ok=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Only one process may write a partial file; a second one is told so at once."""
        self.part.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise DownloadAlreadyRunning(
                f"{self.part.name.removesuffix(PART_SUFFIX)} is already being downloaded by another "
                "slmchat window or command."
            ) from None
        try:
            yield
        finally:
            lock.release()


class ModelLibrary:
    """Lists, adds and removes models; hands out partial-download slots to the hub module."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self._registry_path = paths.data / REGISTRY_FILE
        self._info_cache: dict[Path, tuple[tuple[int, int], GGUFInfo]] = {}

    # --- reading -------------------------------------------------------------------------
    def list(self) -> list[LibraryModel]:
        """The starter model (when present) then every registered model, with fresh GGUF facts."""
        models = []
        starter = starter_model()
        if starter is not None:
            models.append(self._with_info(LibraryModel(_starter_id(starter), starter, ModelSource.STARTER, None)))
        models.extend(self._with_info(self._from_entry(entry)) for entry in self._load())
        return models

    def get(self, model_id: str) -> LibraryModel:
        for model in self.list():
            if model.id == model_id:
                return model
        raise UnknownModel(f'There is no model "{model_id}". Run "slmchat-cli models" to see the names.')

    def find_download(self, repo_id: str, filename: str) -> LibraryModel | None:
        for entry in self._load():
            if entry.get("repo_id") == repo_id and entry.get("filename") == filename:
                return self._with_info(self._from_entry(entry))
        return None

    def unfinished_downloads(self) -> list[UnfinishedDownload]:
        """Partial downloads that can continue, so the app can offer them again after a restart."""
        found = []
        for part in sorted(self.paths.downloads.glob(f"*{PART_SUFFIX}")):
            state = PartialDownload(part).load_state()
            if state is not None:
                found.append(UnfinishedDownload(state, PartialDownload(part).size()))
        return found

    # --- adding ------------------------------------------------------------------------------
    def partial(self, repo_id: str, filename: str) -> PartialDownload:
        """Where the bytes of this file collect while it downloads (names are checked by the hub module)."""
        return PartialDownload(self.paths.downloads / f"{_repo_folder(repo_id)}--{filename}{PART_SUFFIX}")

    def add_download(self, partial: PartialDownload, state: PartialState) -> LibraryModel:
        """Validate a verified partial file, move it into the models folder and register it.

        A file that fails validation is deleted and the GGUF check error raised: it never appears
        as a model.
        """
        try:
            check_gguf(partial.part)
        except ModelFileError:
            partial.discard()
            raise
        target = self.paths.models / _repo_folder(state.repo_id) / state.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial.part, target)
        partial.state_path.unlink(missing_ok=True)
        entry = {
            "source": ModelSource.DOWNLOADED.value,
            "path": target.relative_to(self.paths.models).as_posix(),
            "owned": True,
            "repo_id": state.repo_id,
            "filename": state.filename,
            "sha256": state.sha256,
            "commit": state.commit,
        }
        return self._register(entry, match=lambda e: (e.get("repo_id"), e.get("filename")) == (state.repo_id, state.filename))

    def import_file(self, path: str | os.PathLike[str], copy: bool) -> LibraryModel:
        """Add a GGUF from disk: used where it is, or copied into the models folder (the user's choice).

        A file named like a catalog file must hold that model (WrongModel otherwise), in the window
        and the CLI alike.
        """
        source = Path(path).expanduser().resolve()
        load_catalog().check_named_file(source.name, self._checked(source))
        if not copy:
            entry = {"source": ModelSource.IMPORTED.value, "path": str(source), "owned": False}
            return self._register(entry, match=lambda e: not e.get("owned") and e.get("path") == str(source))
        target = self._copy_in(source)
        entry = {"source": ModelSource.IMPORTED.value, "path": target.relative_to(self.paths.models).as_posix(), "owned": True}
        return self._register(entry, match=lambda e: False)

    # --- removing ------------------------------------------------------------------------------
    def remove(self, model_id: str) -> LibraryModel:
        """Forget a model; delete its file only if it is ours (downloaded or copied in), and its partials."""
        model = self.get(model_id)
        if model.source is ModelSource.STARTER:
            raise CannotRemoveModel("The starter model comes with slmchat and cannot be removed.")
        with self._registry_lock():
            entries = [e for e in self._load() if self._from_entry(e).id != model_id]
            self._save(entries)
        if model.owned and _inside(model.path, self.paths.models) and not model.path.is_dir():
            model.path.unlink(missing_ok=True)
            _remove_if_empty(model.path.parent, stop=self.paths.models)
        partial = self.partial(model.repo_id, model.filename) if model.repo_id and model.filename else None
        if partial is not None and _inside(partial.part, self.paths.downloads):
            try:
                with partial.locked():
                    partial.discard()
            except DownloadAlreadyRunning:
                log.info("kept %s: a download of it is running", partial.part)
        self._info_cache.pop(model.path, None)
        return model

    def cleanup_stale(self) -> list[Path]:
        """Delete leftovers no download can continue from; partials of running downloads are left alone.

        Kept: a `.part` with a readable state file (it resumes). Deleted: a `.part` without state,
        a state without its `.part`, huggingface_hub's `*.incomplete` files, and unused lock files.
        """
        removed: list[Path] = []
        folder = self.paths.downloads
        if not folder.is_dir():
            return removed
        for path in sorted(folder.iterdir()):
            if path.name.endswith(PART_SUFFIX):
                partial = PartialDownload(path)
                if partial.load_state() is None and _try_locked(partial, partial.discard):
                    removed.append(path)
            elif path.name.endswith(PART_SUFFIX + ".json"):
                partial = PartialDownload(path.with_name(path.name.removesuffix(".json")))
                if not partial.part.exists() and _try_locked(partial, partial.discard):
                    removed.append(path)
            elif path.name.endswith(".incomplete"):
                path.unlink(missing_ok=True)
                removed.append(path)
        for path in sorted(folder.glob(f"*{PART_SUFFIX}.lock")):
            partial = PartialDownload(path.with_name(path.name.removesuffix(".lock")))
            if not partial.part.exists() and _try_locked(partial, lambda: None):
                path.unlink(missing_ok=True)
                removed.append(path)
        if removed:
            log.info("removed stale download leftovers: %s", [p.name for p in removed])
        return removed

    # --- internals -----------------------------------------------------------------------------
    def _with_info(self, model: LibraryModel) -> LibraryModel:
        """Attach GGUF facts, or say why the file cannot be used (a refused entry is not read)."""
        if model.problem is not None:
            return model
        if not model.path.is_file():
            return replace(model, problem=f"The file {model.path} is missing. It may have been moved or deleted.")
        try:
            return replace(model, info=self._checked(model.path))
        except ModelFileError as error:
            return replace(model, problem=str(error))

    def _checked(self, path: Path) -> GGUFInfo:
        """check_gguf, once per (path, mtime, size), so listing stays fast."""
        try:
            stat = path.stat()
        except OSError:
            return check_gguf(path)  # raises the GGUF check's own error for a missing or unreadable file
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._info_cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        info = check_gguf(path)
        self._info_cache[path] = (key, info)
        return info

    def _from_entry(self, entry: dict) -> LibraryModel:
        """A registry entry as a model. The registry is a file on disk anyone may have edited: a
        file slmchat keeps (downloaded, copied in, or named relative to the models folder) must
        be inside the models folder, symlinks followed; an entry pointing elsewhere is listed as
        unusable, never read, and Remove only forgets it. Only a model used where it is (an
        import without copying, by absolute path) may live anywhere."""
        path = Path(entry["path"])
        source = ModelSource(entry["source"])
        owned = bool(entry.get("owned"))
        full = path if path.is_absolute() else self.paths.models / path
        problem = None
        if (owned or source is ModelSource.DOWNLOADED or not path.is_absolute()) \
                and not _inside(full, self.paths.models):
            owned = False
            problem = (f"slmchat's list of models points to {full}, outside its models folder, so that "
                       "file is not used. Remove this entry and download or import the model again.")
        return LibraryModel(
            id=entry["id"],
            path=full,
            source=source,
            info=None,
            problem=problem,
            owned=owned,
            repo_id=entry.get("repo_id"),
            filename=entry.get("filename"),
            sha256=entry.get("sha256"),
            commit=entry.get("commit"),
        )

    def _register(self, entry: dict, match) -> LibraryModel:
        """Add or replace (when `match` finds one, keeping its id) an entry, under the registry lock."""
        with self._registry_lock():
            entries = self._load()
            existing = next((e for e in entries if match(e)), None)
            if existing is not None:
                entry = {**entry, "id": existing["id"], "added_at": existing.get("added_at", time.time())}
                entries = [entry if e is existing else e for e in entries]
            else:
                taken = {e["id"] for e in entries}
                starter = starter_model()
                if starter is not None:
                    taken.add(_starter_id(starter))
                entry = {**entry, "id": _unique_id(_slug(Path(entry["path"]).name), taken), "added_at": time.time()}
                entries.append(entry)
            self._save(entries)
        return self._with_info(self._from_entry(entry))

    def _copy_in(self, source: Path) -> Path:
        folder = self.paths.models / IMPORTED_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        size = source.stat().st_size
        free = shutil.disk_usage(folder).free
        if free < size:
            raise NotEnoughDiskSpace(
                f"Copying this model needs {_mb(size)} of free disk space, but only {_mb(free)} is free. "
                "Free some space, or use the file where it is instead of copying it."
            )
        target = _unique_path(folder / source.name)
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".copying")
        os.close(handle)
        try:
            shutil.copyfile(source, temporary)
            os.replace(temporary, target)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            raise NotEnoughDiskSpace(
                f"The model could not be copied ({error.strerror or error}). Free some space and try again."
            ) from error
        return target

    @contextmanager
    def _registry_lock(self) -> Iterator[None]:
        self.paths.data.mkdir(parents=True, exist_ok=True)
        with FileLock(self._registry_path.with_name(REGISTRY_FILE + ".lock"), timeout=30):
            yield

    def _load(self) -> list[dict]:
        try:
            data = json.loads(self._registry_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            log.exception("the model registry %s is unreadable; treating it as empty", self._registry_path)
            return []
        entries = data.get("models") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            log.warning("the model registry %s lists no models; treating it as empty", self._registry_path)
            return []
        valid = [e for e in entries if _valid_entry(e)]
        if len(valid) < len(entries):
            log.warning("ignored %d malformed entries of the model registry %s",
                        len(entries) - len(valid), self._registry_path)
        return valid

    def _save(self, entries: list[dict]) -> None:
        _write_json_atomic(self._registry_path, {"version": REGISTRY_VERSION, "models": entries})


# --- helpers ------------------------------------------------------------------------------------
def _repo_folder(repo_id: str) -> str:
    """`owner/name` as one folder name; the hub forbids `--` inside names, so this cannot collide."""
    return repo_id.replace("/", "--")


def _starter_id(path: Path) -> str:
    return _slug(path.name)


def _slug(filename: str) -> str:
    stem = re.sub(r"\.gguf$", "", filename, flags=re.IGNORECASE).lower()
    return re.sub(r"[^a-z0-9._-]+", "-", stem).strip("-.") or "model"


def _unique_id(base: str, taken: set[str]) -> str:
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


def _unique_path(path: Path) -> Path:
    candidate, number = path, 2
    while candidate.exists():
        candidate, number = path.with_name(f"{path.stem}-{number}{path.suffix}"), number + 1
    return candidate


def _try_locked(partial: PartialDownload, action) -> bool:
    """Run `action` only if no download holds this partial's lock."""
    try:
        with partial.locked():
            action()
    except DownloadAlreadyRunning:
        return False
    return True


_ENTRY_TEXT = ("repo_id", "filename", "sha256", "commit")  # optional fields of a registry entry


def _valid_entry(entry: object) -> bool:
    """A registry entry with the types `_from_entry` needs (the starter is never registered)."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("id"), str)
        and isinstance(entry.get("path"), str) and bool(entry["path"]) and "\0" not in entry["path"]
        and entry.get("source") in (ModelSource.DOWNLOADED.value, ModelSource.IMPORTED.value)
        and isinstance(entry.get("owned", False), bool)
        and all(isinstance(entry.get(key), (str, type(None))) for key in _ENTRY_TEXT)
    )


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` is below `folder` once `..` and symlinks are resolved (also for a missing file)."""
    try:
        return folder.resolve() in path.resolve().parents
    except (OSError, RuntimeError):  # a symlink loop
        return False


def _remove_if_empty(folder: Path, stop: Path) -> None:
    if folder != stop and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def _write_json_atomic(path: Path, payload: object) -> None:
    """Write beside the target, then rename: a crash leaves the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(payload, stream, indent=1)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1000**2:,.0f} MB"
