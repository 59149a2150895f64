"""Check every catalog file against the hub and compute new pins: the core of `slmchat-cli catalog refresh`.

For each downloadable file: is it still at its pinned commit with the pinned size and sha256, and
what does the repo's main hold now under that name — the same bytes at a newer commit, other
bytes (a re-upload), or nothing (renamed or deleted)? A new pin (an unpinned file, a newer
commit, a re-upload) is taken from one commit's listing, and new bytes are pinned only when their
GGUF header is the catalog's model. `apply` writes the pins into the catalog document; a file
that only the old commit still has keeps its pin, because that commit still serves it.
"""

from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass
from typing import Any

from slmchat.core.errors import HubAccessDenied, HubNotFound, ModelFileError, SlmchatError
from slmchat.core.models.catalog import CatalogEntry, header_mismatch, parse_catalog
from slmchat.core.models.hub import Hub, RepoSnapshot


class Status(str, enum.Enum):
    OK = "ok"
    NEWER_COMMIT = "newer commit"  # the same bytes at a newer commit: the pin moves forward
    PINNED = "pinned"  # an unpinned file, pinned now
    REUPLOADED = "re-uploaded"  # other bytes under the same name at main
    RENAMED = "renamed"  # gone from main; the same bytes under another name
    GONE_FROM_MAIN = "gone from main"  # the pinned commit still serves it
    GONE = "gone"  # not at main, and no pin to fall back on
    MISSING_AT_REVISION = "missing at its pinned commit"
    MISMATCH = "does not match its pin"
    WRONG_MODEL = "wrong model"
    REPO_GONE = "repo gone"
    NO_ACCESS = "no access"
    UNREACHABLE = "unreachable"

    @property
    def problem(self) -> bool:
        """True when a user's Download of this file fails (or would get bytes nobody checked)."""
        return self in _PROBLEMS


_PROBLEMS = {Status.GONE, Status.MISSING_AT_REVISION, Status.MISMATCH, Status.WRONG_MODEL, Status.REPO_GONE,
             Status.NO_ACCESS, Status.UNREACHABLE}


@dataclass(frozen=True)
class NewPin:
    revision: str
    size: int
    sha256: str
    source: str  # the URL the facts were read from


@dataclass(frozen=True)
class FileCheck:
    entry_id: str
    quant: str
    repo: str
    file: str
    status: Status
    message: str
    new_pin: NewPin | None = None


def check_catalog(raw: dict, hub: Hub) -> list[FileCheck]:
    """One FileCheck per downloadable file of the catalog document `raw` (validated first)."""
    entries = {entry.id: entry for entry in parse_catalog(raw)}
    snapshots = _Snapshots(hub)
    checks = []
    for model in raw["models"]:
        for item in model.get("files") or []:
            if item.get("repo"):
                checks.append(_check_file(entries[model["id"]], item, snapshots, hub))
    return checks


def apply(raw: dict, checks: list[FileCheck], today: datetime.date | None = None) -> int:
    """Write every new pin into `raw` (files and their entries' sources); returns how many."""
    day = (today or datetime.date.today()).isoformat()
    models = {model["id"]: model for model in raw["models"]}
    written = 0
    for check in checks:
        if check.new_pin is None:
            continue
        model = models[check.entry_id]
        item = next(f for f in model["files"] if f["quant"] == check.quant)
        pin = check.new_pin
        item.update(revision=pin.revision, size_bytes=pin.size, sha256=pin.sha256, verified=True)
        item.pop("unverified_reason", None)
        item["unconfirmed"] = [key for key in item.get("unconfirmed") or [] if key not in ("size_bytes", "sha256")]
        item["source"] = f"pinned by slmchat-cli catalog refresh on {day}"
        model.setdefault("sources", []).append(
            f"{check.quant} pin ({check.status.value}, {day}): size {pin.size} and sha256 {pin.sha256} "
            f"at commit {pin.revision}: {pin.source}"
        )
        written += 1
    raw["checked_on"] = day
    return written


class _Snapshots:
    """Each repo at each revision listed once per run (a repo holds many of the catalog's files)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._seen: dict[tuple[str, str], RepoSnapshot | SlmchatError] = {}

    def get(self, repo: str, revision: str) -> RepoSnapshot:
        key = (repo, revision)
        if key not in self._seen:
            try:
                self._seen[key] = self._hub.snapshot(repo, revision)
            except SlmchatError as error:
                self._seen[key] = error
        found = self._seen[key]
        if isinstance(found, SlmchatError):
            raise found
        return found


def _check_file(entry: CatalogEntry, item: dict, snapshots: _Snapshots, hub: Hub) -> FileCheck:
    repo, name, quant = item["repo"], item["file"], item["quant"]

    def result(status: Status, message: str, new_pin: NewPin | None = None) -> FileCheck:
        return FileCheck(entry.id, quant, repo, name, status, message, new_pin)

    try:
        main = snapshots.get(repo, "main")
    except HubNotFound:
        return result(Status.REPO_GONE, f"the repo {repo} is gone from the hub (deleted, renamed or made private)")
    except HubAccessDenied:
        return result(Status.NO_ACCESS, f"the hub refused access to {repo} (gated or private)")
    except SlmchatError as error:
        return result(Status.UNREACHABLE, f"the hub could not be asked about {repo}: {error}")
    revision, sha256, size = item.get("revision"), item.get("sha256"), item.get("size_bytes")
    if revision:
        try:
            at_pin = snapshots.get(repo, revision).files.get(name)
        except SlmchatError:
            at_pin = None
        if at_pin is None:
            return result(Status.MISSING_AT_REVISION, f"{name} is not at its pinned commit {revision}")
        if (sha256 and at_pin[1] != sha256) or (size and at_pin[0] != size):
            return result(Status.MISMATCH, f"at commit {revision} {name} is {at_pin[0]} bytes with sha256 "
                                           f"{at_pin[1]}, not the pinned {size} bytes with sha256 {sha256}")
    now = main.files.get(name)
    if now is None:
        renamed = [other for other, (_, other_sha) in main.files.items() if sha256 and other_sha == sha256]
        if not revision:
            return result(Status.GONE, f"{name} is not in {repo} at commit {main.commit}, and it has no pinned "
                                       "commit to download it from")
        kept = f"; the pin still downloads it from commit {revision}"
        if renamed:
            return result(Status.RENAMED, f"{name} was renamed to {renamed[0]} at commit {main.commit}{kept}")
        return result(Status.GONE_FROM_MAIN, f"{name} is no longer in {repo} at commit {main.commit}{kept}")
    now_size, now_sha = now
    if now_size is None or now_sha is None:
        return result(Status.MISMATCH, f"the hub publishes no size or sha256 for {name} at commit {main.commit}")
    source = f"{hub.endpoint}/api/models/{repo}/revision/{main.commit}?blobs=true"
    new_pin = NewPin(main.commit, now_size, now_sha, source)
    if sha256 == now_sha and revision and size == now_size:
        if revision == main.commit:
            return result(Status.OK, f"{name} is pinned at the newest commit {revision}")
        return result(Status.NEWER_COMMIT, f"{name} is unchanged at the newer commit {main.commit} "
                                           f"(pinned at {revision})", new_pin)
    if sha256 == now_sha:  # the known hash, now with the exact size and commit
        return result(Status.PINNED, f"{name} pinned at commit {main.commit} ({now_size} bytes, sha256 {now_sha})",
                      new_pin)
    wrong = _header_problem(entry, hub, repo, name, main.commit)
    if wrong is not None:
        return result(Status.WRONG_MODEL, f"{name} at commit {main.commit} is not {entry.display_name}: {wrong}")
    if sha256 and sha256 != now_sha:
        return result(Status.REUPLOADED, f"{name} was re-uploaded: commit {main.commit} holds other bytes "
                                         f"(sha256 {now_sha}, {now_size} bytes) than the pinned {sha256}", new_pin)
    return result(Status.PINNED, f"{name} pinned at commit {main.commit} ({now_size} bytes, sha256 {now_sha})", new_pin)


def _header_problem(entry: CatalogEntry, hub: Hub, repo: str, name: str, commit: str) -> str | None:
    """Why the file's remote header is not `entry`'s model (or cannot be read), else None."""
    try:
        info = hub.remote_info(repo, name, revision=commit)
    except ModelFileError as error:
        return f"its header cannot be used ({error})"
    except SlmchatError as error:
        return f"its header could not be read ({error})"
    return header_mismatch(entry, info)


def document_header(raw: Any) -> str:
    """A one-line summary of what was checked, for the report's first line."""
    files = sum(1 for model in raw["models"] for item in model.get("files") or [] if item.get("repo"))
    return f"{files} downloadable files in {len(raw['models'])} models"
