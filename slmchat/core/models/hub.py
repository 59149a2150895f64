"""Downloads, search and file listing through the real huggingface_hub client: resumable, cancellable, verified.

Facts this module is built on (huggingface_hub 2.4, docs/HUGGINGFACE_HUB.md): the library
never checks a download's sha256, deletes its own partial file on any error, reports progress
only per `DOWNLOAD_CHUNK_SIZE`, cannot be cancelled on a stalled connection, and — unless
telemetry is off — sends a request of its own on first use. So downloads go through
`get_hf_file_metadata` + `file_download.http_get` into our own partial file (kept across
restarts), through a client whose sockets a pause or cancel can shut, and every file is hashed
against the sha256 the hub publishes before the library may register it.

A file the catalog names is fetched at the commit the catalog pins and must have the pinned size
and sha256 — what the hub says today does not override the pin — and its GGUF header must describe
the catalog's model (the wrong model under the right name is refused even when its hash matches).
A catalog file without a pin is held to what its first download got (`first_downloads.py`).
A listed file whose architecture llama.cpp cannot run is labelled so, and its download is refused
before any request.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import functools
import hashlib
import logging
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from slmchat.core.errors import (
    DownloadCancelled,
    DownloadError,
    DownloadPaused,
    DownloadVerificationFailed,
    HubAccessDenied,
    HubNotFound,
    HubUnreachable,
    ModelFileError,
    NotEnoughDiskSpace,
    SlmchatError,
    UnsafeName,
    UnsupportedModel,
    WrongModel,
)
from slmchat.core.gguf.check import GGUFInfo, HeaderIncomplete, check_gguf, read_gguf_header
from slmchat.core.gguf.tables import SUPPORTED_ARCHITECTURES
from slmchat.core.models import hardware
from slmchat.core.models.catalog import Catalog, CatalogEntry, check_header, load_catalog
from slmchat.core.models.first_downloads import FirstDownload, FirstDownloads
from slmchat.core.models.library import (
    LibraryModel,
    ModelLibrary,
    PartialDownload,
    PartialState,
)

log = logging.getLogger(__name__)

# huggingface_hub is imported lazily (in `_hf`), so these are set before it reads them unless
# another module imported it first; `_hf` then also sets the constants it read. Nothing may leave
# the machine except what the user asked for (no telemetry request), and no Xet side channel.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"

DEFAULT_ENDPOINT = "https://huggingface.co"
# One progress update (and one chance to pause) per chunk: small enough for a smooth bar and a
# prompt stop, large enough to cost nothing.
CHUNK_SIZE = 256 * 1024
PROGRESS_INTERVAL = 0.1  # seconds between progress callbacks
SPEED_WINDOW = 5.0  # seconds of history behind the speed figure
DISK_HEADROOM = 64 * 1024 * 1024  # leave this much free beyond the file itself
HASH_BLOCK = 1024 * 1024
# A remote file's header (metadata + tensor table) is fetched by ranged GETs: most fit in the
# first 2 MiB; big vocabularies (Gemma's 262k tokens) need more. No real header nears the cap.
HEADER_FIRST_FETCH = 2 * 1024 * 1024
HEADER_GROWTH = 4
HEADER_MAX_FETCH = 32 * 1024 * 1024
FIT_CONTEXT = 4096  # the context a hub listing judges fit at (the catalog's RECOMMEND_CONTEXT)

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_NAME_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_WINDOWS_DEVICES = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(IQ[1-4]_(?:XXS|XS|NL|S|M)|Q[2-8]_K(?:_XL|_[SML])?|Q[4-8]_[01]|TQ[12]_0|MXFP4|BF16|F16|F32)"
    r"(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# llama.cpp's gguf-split names: "<name>-00001-of-00003.gguf"; llama.cpp loads the first part and
# finds the others beside it by these names.
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
# A vision model's image projector ("mmproj-model-f16.gguf"): a CLIP encoder, not a chat model.
_PROJECTOR = re.compile(r"mmproj", re.IGNORECASE)
_SEPARATORS = re.compile(r"[-_. ]+")
SPLIT_PROBLEM = ("This model is split into {count} files, and slmchat cannot download split models yet. "
                 "Choose a quantization that comes in one file.")


# --- names from outside ---------------------------------------------------------------------
def check_repo_id(repo_id: str) -> str:
    """`owner/name` with the hub's own character rules; anything that could act as a path is refused."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(
        len(part) <= 96 and _NAME_PART.fullmatch(part) and "--" not in part and ".." not in part for part in parts
    ):
        raise UnsafeName(f'"{_printable(repo_id)}" is not a valid Hugging Face repo name (expected "owner/name").')
    return repo_id


def check_filename(filename: str) -> str:
    """A plain `.gguf` file name: no folders, `..`, absolute paths, NUL or other control characters."""
    bad = (
        not isinstance(filename, str)
        or not filename
        or len(filename) > 200
        or any(ch in filename for ch in '/\\:*?"<>|')
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in filename)
        or filename.startswith((".", " "))
        or filename.endswith((".", " "))
        or not filename.lower().endswith(".gguf")
        or _WINDOWS_DEVICES.fullmatch(filename) is not None
    )
    if bad:
        raise UnsafeName(f'"{_printable(filename)}" is not a safe model file name, so slmchat will not download it.')
    return filename


def check_revision(revision: str) -> str:
    if not revision or len(revision) > 200 or any(ord(ch) < 32 or ch in "\\" for ch in revision) or ".." in revision:
        raise UnsafeName(f'"{_printable(revision)}" is not a valid revision.')
    return revision


def guess_quantization(filename: str) -> str | None:
    """The quantization named in a file name ("...-Q4_K_M.gguf" -> "Q4_K_M"), if any."""
    match = _QUANT.search(filename)
    return match.group(1).upper() if match else None


def split_part(filename: str) -> tuple[int, int] | None:
    """(part, of how many) for a part of a split model ("x-00002-of-00003.gguf" -> (2, 3)), else
    None; "x-00001-of-00001.gguf" is one whole file, not a split."""
    match = _SPLIT.search(filename)
    if match is None or int(match.group(2)) == 1:
        return None
    return int(match.group(1)), int(match.group(2))


def model_stem(filename: str) -> str:
    """What the files of one model in a repo share: the name without split numbering, quantization
    and `.gguf`, separators and case evened out ("SmolLM2-135M.Q4_1.gguf" -> "smollm2-135m").

    Files with the same stem are quantizations of one model and share its shape; a name whose
    quantization is not recognised keeps a stem of its own, which costs a header read, not a
    wrong label.
    """
    stem = _SPLIT.sub("", filename)
    stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
    return _SEPARATORS.sub("-", _QUANT.sub("", stem)).strip("-").lower()


class UnsupportedArchitecture(UnsupportedModel):
    """A GGUF of an architecture the bundled llama.cpp cannot run, known from its header alone."""

    def __init__(self, filename: str, architecture: str) -> None:
        shown = _printable(architecture)[:40]
        super().__init__(
            f"slmchat cannot run {filename}: it is a \"{shown}\" model, a kind the llama.cpp inside slmchat "
            "does not support. Choose another model.",
            detail=f"architecture {architecture!r} is not in SUPPORTED_ARCHITECTURES",
        )
        self.architecture = architecture


# --- records ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pin:
    """What one download must be: the revision fetched and the bytes accepted (None: not known)."""

    revision: str
    sha256: str | None = None
    size: int | None = None
    entry: CatalogEntry | None = None  # the catalog model whose header the file must have
    record_first: bool = False  # an unpinned catalog file: remember what this download got


@dataclass(frozen=True)
class RepoSnapshot:
    """A repo at one commit: its files' sizes and sha256 (None for a file not stored with LFS)."""

    repo_id: str
    commit: str
    files: dict[str, tuple[int | None, str | None]]


@dataclass(frozen=True)
class DownloadProgress:
    done: int  # bytes on disk, including those kept from an earlier attempt
    total: int
    speed: float  # bytes per second over the last few seconds
    eta: float | None  # seconds left at that speed; None until it can be told

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass(frozen=True)
class RepoSummary:
    repo_id: str
    downloads: int
    likes: int
    gated: bool


@dataclass(frozen=True)
class RemoteFile:
    repo_id: str
    filename: str
    size: int | None
    sha256: str | None
    quantization: str | None
    fit: hardware.Fit | None = None  # filled when the listing was asked for a machine
    fit_problem: str | None = None  # why there is no fit label (header unreadable, split, size unknown, ...)
    parts: tuple[str, ...] = ()  # a split model's files, first to last (`filename` is the first)
    architecture: str | None = None  # llama.cpp's name, from the header (read when listed for a machine)
    unsupported_reason: str | None = None  # set when the bundled llama.cpp cannot run it; also in fit_problem

    @property
    def fit_text(self) -> str:
        """The label a listing shows; the full story is `fit.reason` or `fit_problem`."""
        if self.unsupported_reason is not None:
            return f"can't run ({_printable(self.architecture or '?')[:40]})"
        if self.fit is not None:
            return self.fit.label.text
        return f"split into {len(self.parts)} files: not supported" if self.parts else "fit unknown"


ProgressCallback = Callable[[DownloadProgress], None]


class DownloadControl:
    """Pause or cancel one download from any thread; both also end a stalled connection.

    Pause keeps the bytes downloaded so far (the next download of the file continues from them);
    cancel deletes them.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._keep_partial = True
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None

    def pause(self) -> None:
        self._request_stop(keep_partial=True)

    def cancel(self) -> None:
        self._request_stop(keep_partial=False)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def keep_partial(self) -> bool:
        return self._keep_partial

    def raise_if_stopped(self) -> None:
        if self._stop.is_set():
            raise _Stopped()

    def _request_stop(self, keep_partial: bool) -> None:
        with self._lock:
            self._keep_partial = self._keep_partial and keep_partial
            self._stop.set()
            sock = self._socket
        if sock is not None:
            try:  # wakes a read blocked on a stalled connection; the retry then meets the stop flag
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._socket = sock
            stopped = self._stop.is_set()
        if stopped and sock is not None:
            self._request_stop(self._keep_partial)


class _Stopped(Exception):
    """Raised inside huggingface_hub's loop (from our progress object or request hook) to stop a download."""


# --- huggingface_hub, configured once -------------------------------------------------------
_setup_lock = threading.Lock()
_configured = False
_current = threading.local()  # the DownloadControl of the download running on this thread, if any


def _hf() -> ModuleType:
    """huggingface_hub, imported lazily and set up for slmchat: no telemetry, small chunks, stoppable sockets."""
    global _configured
    import huggingface_hub
    from huggingface_hub import constants

    with _setup_lock:
        if not _configured:
            # Also right if something imported huggingface_hub before this module set the environment.
            constants.HF_HUB_DISABLE_TELEMETRY = True
            constants.HF_HUB_DISABLE_XET = True
            constants.DOWNLOAD_CHUNK_SIZE = CHUNK_SIZE
            huggingface_hub.set_client_factory(_client_factory)
            _configured = True
    return huggingface_hub


def _client_factory() -> Any:
    """The library's own client plus two hooks: refuse requests of a stopped download, remember its socket."""
    import httpx2
    from huggingface_hub.utils._http import hf_request_event_hook

    return httpx2.Client(
        event_hooks={"request": [hf_request_event_hook, _refuse_if_stopped], "response": [_remember_socket]},
        follow_redirects=True,
        timeout=None,
    )


def _refuse_if_stopped(request: Any) -> None:
    control: DownloadControl | None = getattr(_current, "control", None)
    if control is not None:
        control.raise_if_stopped()


def _remember_socket(response: Any) -> None:
    control: DownloadControl | None = getattr(_current, "control", None)
    if control is None:
        return
    stream = response.extensions.get("network_stream")
    control._watch(stream.get_extra_info("socket") if stream is not None else None)


class _ProgressBar:
    """Stands in for tqdm inside `http_get`: every chunk passes through `update`, where a stop lands."""

    def __init__(self, meter: _Meter, **_tqdm_arguments: Any) -> None:
        self._meter = meter

    def __enter__(self) -> _ProgressBar:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def update(self, n: int) -> None:
        self._meter.advance(n)


class _Meter:
    """Bytes done, speed over a sliding window, ETA; throttled to the callback."""

    def __init__(self, done: int, total: int, control: DownloadControl, callback: ProgressCallback | None) -> None:
        self.done, self.total = done, total
        self._control, self._callback = control, callback
        self._samples: collections.deque[tuple[float, int]] = collections.deque([(time.monotonic(), done)])
        self._last_report = 0.0

    def advance(self, n: int) -> None:
        self._control.raise_if_stopped()
        self.done += n
        now = time.monotonic()
        self._samples.append((now, self.done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
            self._samples.popleft()
        if self._callback is not None and (now - self._last_report >= PROGRESS_INTERVAL or self.done >= self.total):
            self._last_report = now
            self._callback(self.snapshot())

    def snapshot(self) -> DownloadProgress:
        (start, start_done), (end, end_done) = self._samples[0], self._samples[-1]
        speed = (end_done - start_done) / (end - start) if end > start else 0.0
        eta = (self.total - self.done) / speed if speed > 0 else None
        return DownloadProgress(self.done, self.total, speed, eta)


# --- the hub -----------------------------------------------------------------------------------
class Hub:
    """Search the hub, list a repo's GGUF files, and download one into the model library.

    Downloads of files the catalog names obey its pins (`catalog`, default the shipped one).
    `endpoint` defaults to `HF_ENDPOINT` (read at each call) or huggingface.co; `token` is sent only
    when given (a stored huggingface token is never picked up implicitly) and is never logged.
    `disk_free(folder) -> bytes` is injectable so the disk check can be tested.
    """

    def __init__(
        self,
        library: ModelLibrary,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        disk_free: Callable[[Path], int] | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        self._library = library
        self._endpoint = endpoint
        self._token = token or None
        self._disk_free = disk_free or (lambda folder: shutil.disk_usage(folder).free)
        self._headers: dict[tuple[str, str, str], GGUFInfo] = {}  # (repo, commit, file): a commit's file never changes
        self._catalog = catalog
        self._first = FirstDownloads(library.paths.data)
        self._refused: dict[tuple[str, str], UnsupportedModel] = {}  # (repo, file) listed as unrunnable

    @property
    def catalog(self) -> Catalog:
        """The catalog whose pins downloads obey (the shipped one unless given), read on first use."""
        if self._catalog is None:
            self._catalog = load_catalog()
        return self._catalog

    @property
    def endpoint(self) -> str:
        return (self._endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")

    # --- search and listing --------------------------------------------------------------------
    def search_gguf_repos(self, query: str, limit: int = 20) -> list[RepoSummary]:
        """Repos tagged GGUF whose name contains `query`, most downloaded first (hostile names dropped)."""
        api = self._api()
        with _translated(f'search for "{query}"'):
            found = list(api.list_models(search=query or None, filter="gguf", sort="downloads", limit=limit))
        results = []
        for model in found:
            try:
                check_repo_id(model.id)
            except UnsafeName:
                log.warning("hub search returned an unsafe repo name %r; skipped", model.id)
                continue
            results.append(RepoSummary(model.id, model.downloads or 0, model.likes or 0, bool(model.gated)))
        return results

    def list_gguf_files(
        self, repo_id: str, *, machine: hardware.Machine | None = None, n_ctx: int = FIT_CONTEXT
    ) -> list[RemoteFile]:
        """The repo's chat model files with size, sha256 and quantization, one entry per choice.

        Unsafe names and image projectors (`mmproj`) are left out. The parts of a split model are one
        entry: the first part's name, the parts' total size, and a `fit_problem` instead of a label,
        because slmchat downloads single files only.

        With a `machine`, each file gets a fit label at `n_ctx` tokens (capped at the model's trained
        context). One header is fetched per model (files with one `model_stem`): a model's
        quantizations share its shape and differ in their weights, which each file's own size gives;
        a repo that holds several models gets each file labelled from its own model's header.
        """
        check_repo_id(repo_id)
        api = self._api()
        with _translated(repo_id):
            info = api.model_info(repo_id, files_metadata=True)
        files = _join_split_parts(self._gguf_siblings(repo_id, info))
        if machine is None:
            return files
        revision = info.sha if isinstance(info.sha, str) and _COMMIT.fullmatch(info.sha) else "main"
        shapes: dict[str, GGUFInfo | SlmchatError] = {}
        labelled = []
        for file in files:
            if file.parts:
                labelled.append(file)
                continue
            stem = model_stem(file.filename)
            if stem not in shapes:
                shapes[stem] = self._shape_or_error(repo_id, file.filename, revision)
            shape = shapes[stem]
            if isinstance(shape, UnsupportedArchitecture):
                self._refused[(repo_id, file.filename)] = shape
                labelled.append(dataclasses.replace(file, architecture=shape.architecture,
                                                    unsupported_reason=str(shape), fit_problem=str(shape)))
            elif isinstance(shape, SlmchatError):
                labelled.append(dataclasses.replace(file, fit_problem=str(shape)))
            else:
                labelled.append(dataclasses.replace(_with_fit(file, shape, machine, n_ctx), architecture=shape.architecture))
        return labelled

    def _shape_or_error(self, repo_id: str, filename: str, revision: str) -> GGUFInfo | SlmchatError:
        """The header of one file of a model, or why it cannot be read (the listing still shows the files)."""
        try:
            return self.remote_info(repo_id, filename, revision=revision)
        except (ModelFileError, DownloadError) as error:  # a gated repo, a damaged or unsupported header
            log.info("no fit labels for %s/%s: %s (%s)", repo_id, filename, error, getattr(error, "detail", ""))
            return error

    def _gguf_siblings(self, repo_id: str, info: Any) -> list[RemoteFile]:
        files = []
        for sibling in info.siblings or []:
            if not sibling.rfilename.lower().endswith(".gguf"):
                continue
            try:
                check_filename(sibling.rfilename)
            except UnsafeName:
                log.warning("repo %s lists an unsafe file name %r; skipped", repo_id, sibling.rfilename)
                continue
            if _PROJECTOR.search(sibling.rfilename):
                log.info("repo %s: %s is an image projector, not a chat model; not listed", repo_id, sibling.rfilename)
                continue
            sha256 = sibling.lfs.sha256 if sibling.lfs else None
            files.append(RemoteFile(repo_id, sibling.rfilename, sibling.size, sha256, guess_quantization(sibling.rfilename)))
        return files

    def remote_info(self, repo_id: str, filename: str, revision: str = "main") -> GGUFInfo:
        """`check_gguf` of a file on the hub, from its header alone: a few MB of a file of any size.

        The header is fetched with ranged GETs (2 MiB, then 4x more, up to 32 MiB) and cached per
        commit. Raises UnsafeName (before any request), Hub* errors, UnsupportedArchitecture, or the
        GGUF check's errors.
        """
        check_repo_id(repo_id)
        check_filename(filename)
        check_revision(revision)
        if _COMMIT.fullmatch(revision) and (repo_id, revision, filename) in self._headers:
            return self._headers[(repo_id, revision, filename)]  # a commit's file: no request at all
        hf = _hf()
        metadata = self._metadata(hf, repo_id, filename, revision)
        key = (repo_id, metadata.commit_hash or "", filename)
        if key not in self._headers:
            if metadata.size is None:
                raise DownloadError(f"The hub did not say how large {filename} is, so slmchat cannot read it.")
            self._headers[key] = self._read_remote_header(metadata, filename)
        return self._headers[key]

    def _read_remote_header(self, metadata: Any, filename: str) -> GGUFInfo:
        data = b""
        wanted = min(HEADER_FIRST_FETCH, metadata.size)
        while True:
            data += self._fetch_range(metadata.location, len(data), wanted, filename)
            try:
                # The architecture first, from the unchecked header: a listing names what it cannot run.
                architecture = read_gguf_header(data, metadata.size, filename).architecture
                if architecture not in SUPPORTED_ARCHITECTURES:
                    raise UnsupportedArchitecture(filename, architecture)
                return read_gguf_header(data, metadata.size, filename, check=True)
            except HeaderIncomplete as more:
                if more.needed_bytes > HEADER_MAX_FETCH:
                    raise UnsupportedModel(
                        f"The settings block of {filename} is unusually large, so slmchat cannot judge it from "
                        "the hub. Download it to check it.",
                        detail=f"header needs more than {more.needed_bytes} bytes (cap {HEADER_MAX_FETCH})",
                    ) from None
                wanted = min(max(more.needed_bytes, len(data) * HEADER_GROWTH), HEADER_MAX_FETCH, metadata.size)

    def _fetch_range(self, url: str, start: int, stop: int, filename: str) -> bytes:
        """Bytes [start, stop) of the file through huggingface_hub's own client (its hooks, offline mode)."""
        from huggingface_hub import constants
        from huggingface_hub.utils import (
            build_hf_headers,
            get_session,
            hf_raise_for_status,
        )

        headers = build_hf_headers(token=self._token or False)
        if _origin(url) != _origin(self.endpoint):
            headers.pop("authorization", None)  # a CDN link is signed; the token stays with the hub
        headers["Range"] = f"bytes={start}-{stop - 1}"
        body = bytearray()
        with _translated(filename), get_session().stream(
            "GET", url, headers=headers, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
        ) as response:
            if response.status_code >= 400:
                response.read()  # the error's message is in the body
            hf_raise_for_status(response)
            # A server that ignores Range answers 200 with the whole file: read only up to `stop`.
            skip = start if response.status_code == 200 else 0
            if response.status_code == 206 and not response.headers.get("content-range", "").startswith(f"bytes {start}-"):
                raise DownloadError(f"The hub sent the wrong part of {filename}.",
                                    detail=f"asked {headers['Range']}, got {response.headers.get('content-range')}")
            for block in response.iter_bytes():
                body += block
                if len(body) >= skip + stop - start:
                    break
        if len(body) < skip + stop - start:
            raise HubUnreachable(f"The hub cut the connection while slmchat read {filename}. Try again later.",
                                 detail=f"{len(body)} of {skip + stop - start} bytes")
        return bytes(body[skip : skip + stop - start])

    # --- downloading -------------------------------------------------------------------------------
    def download(
        self,
        repo_id: str,
        filename: str,
        *,
        revision: str | None = None,
        expected_sha256: str | None = None,
        on_progress: ProgressCallback | None = None,
        control: DownloadControl | None = None,
    ) -> LibraryModel:
        """Download one GGUF file, verify it, and register it in the library; return the new model.

        A catalog file is fetched at its pinned revision (unless `revision` is given) and must have
        the pinned size and sha256 and the catalog model's header; an unpinned catalog file is held
        to what its first download got; any other file is fetched at `revision` (default main).
        Continues from the bytes of an earlier attempt (paused, cut off, or in a closed app) when they
        belong to the same upload. Raises DownloadPaused (bytes kept), DownloadCancelled (bytes
        deleted), DownloadVerificationFailed (bytes deleted, nothing registered), WrongModel (bytes
        deleted), NotEnoughDiskSpace (checked before any byte is fetched), UnsupportedModel for a
        part of a split model or a file listed as unrunnable (before any request), Hub* errors, or
        the GGUF check's errors for a bad file.
        `expected_sha256` must agree with the hub's (and with the catalog's pin, when there is one).
        """
        check_repo_id(repo_id)
        check_filename(filename)
        if revision is not None:
            check_revision(revision)
        part = split_part(filename)
        if part is not None:
            raise UnsupportedModel(SPLIT_PROBLEM.format(count=part[1]), detail=f"{repo_id}/{filename}")
        refused = self._refused.get((repo_id, filename))
        if refused is not None:
            raise refused
        pin = self.pin_for(repo_id, filename, revision, expected_sha256)
        control = control or DownloadControl()
        hf = _hf()
        partial = self._library.partial(repo_id, filename)
        _current.control = control
        try:
            with partial.locked():
                try:
                    return self._download_locked(hf, partial, repo_id, filename, pin, on_progress, control)
                except _Stopped:
                    if control.keep_partial:
                        raise DownloadPaused(f"The download of {filename} is paused.") from None
                    partial.discard()
                    raise DownloadCancelled(f"The download of {filename} was cancelled.") from None
                except (DownloadVerificationFailed, WrongModel):
                    partial.discard()
                    raise
        finally:
            _current.control = None
            control._watch(None)  # the connection goes back to the pool: a late cancel must not touch it

    def _download_locked(
        self,
        hf: ModuleType,
        partial: PartialDownload,
        repo_id: str,
        filename: str,
        pin: Pin,
        on_progress: ProgressCallback | None,
        control: DownloadControl,
    ) -> LibraryModel:
        metadata = self._metadata(hf, repo_id, filename, pin.revision)
        sha256 = self._published_sha256(metadata, repo_id, filename, pin.revision)
        if (pin.sha256 and pin.sha256 != sha256) or (pin.size is not None and metadata.size != pin.size):
            raise DownloadVerificationFailed(
                f"{filename} on the hub is not the file slmchat expects, so it was not downloaded. "
                "The file may have been replaced on the hub; a newer slmchat may know the new one.",
                detail=f"revision {pin.revision}: expected sha256 {pin.sha256} size {pin.size}, "
                       f"hub sha256 {sha256} size {metadata.size}",
            )
        existing = self._library.find_download(repo_id, filename)
        if existing is not None and existing.sha256 == sha256 and existing.usable:
            return existing
        if metadata.size is None:
            raise DownloadError(f"The hub did not say how large {filename} is, so it cannot be downloaded safely.")
        state = PartialState(repo_id, filename, sha256, metadata.size, metadata.commit_hash)
        kept = partial.prepare(state)
        self._check_disk(metadata.size - kept)
        log.info("downloading %s/%s at %s (%d bytes, %d already here)", repo_id, filename, pin.revision,
                 metadata.size, kept)
        self._fetch(hf, metadata, partial.part, kept, filename, control, on_progress)
        self._verify(partial.part, sha256, filename, control)
        if pin.entry is not None:
            check_header(pin.entry, check_gguf(partial.part), filename)
        model = self._library.add_download(partial, state)
        commit = metadata.commit_hash or ""
        if pin.record_first and _COMMIT.fullmatch(commit):
            self._first.record(repo_id, filename, FirstDownload(commit, metadata.size, sha256))
        return model

    def pin_for(self, repo_id: str, filename: str, revision: str | None = None,
                expected_sha256: str | None = None) -> Pin:
        """What a download of this file must fetch and accept: the catalog's pin, else what its
        first download got (for a catalog file), else `revision` or main with `expected_sha256`."""
        expected = expected_sha256.lower() if expected_sha256 else None
        found = self.catalog.find_file(repo_id, filename)
        if found is None:
            return Pin(revision or "main", expected)
        entry, file = found
        if expected and file.sha256 and expected != file.sha256:
            raise DownloadVerificationFailed(
                f"{filename} is not the file slmchat's catalog pins, so it was not downloaded.",
                detail=f"asked for sha256 {expected}, catalog pins {file.sha256}",
            )
        if file.verified:
            return Pin(revision or file.revision or "main", file.sha256, file.size_bytes, entry)
        first = self._first.get(repo_id, filename)
        if first is not None and (file.sha256 is None or first.sha256 == file.sha256):
            return Pin(revision or first.revision, first.sha256, first.size, entry)
        return Pin(revision or file.revision or "main", file.sha256 or expected, file.size_bytes, entry,
                   record_first=True)

    def snapshot(self, repo_id: str, revision: str = "main") -> RepoSnapshot:
        """The repo's files (size, sha256) at `revision` and the commit that is: one request.

        Raises HubNotFound for a repo or revision the hub does not have, other Hub* errors."""
        check_repo_id(repo_id)
        check_revision(revision)
        with _translated(f"{repo_id} at {revision}"):
            info = self._api().model_info(repo_id, revision=revision, files_metadata=True)
        files = {}
        for sibling in info.siblings or []:
            lfs = sibling.lfs
            sha256 = lfs.sha256.lower() if lfs and _SHA256.fullmatch(lfs.sha256.lower()) else None
            files[sibling.rfilename] = (sibling.size, sha256)
        return RepoSnapshot(repo_id, info.sha or "", files)

    def _metadata(self, hf: ModuleType, repo_id: str, filename: str, revision: str) -> Any:
        url = hf.hf_hub_url(repo_id, filename, revision=revision, endpoint=self.endpoint)
        with _translated(f"{repo_id}/{filename}"):
            return hf.get_hf_file_metadata(url, token=self._token or False, endpoint=self.endpoint)

    def _published_sha256(self, metadata: Any, repo_id: str, filename: str, revision: str) -> str:
        """The hub's sha256 of the file: the LFS etag, else the file's `lfs.sha256` from the repo info."""
        etag = (metadata.etag or "").lower()
        if _SHA256.fullmatch(etag):
            return etag
        with _translated(repo_id):
            info = self._api().model_info(repo_id, revision=revision, files_metadata=True)
        for sibling in info.siblings or []:
            if sibling.rfilename == filename and sibling.lfs and _SHA256.fullmatch(sibling.lfs.sha256.lower()):
                return sibling.lfs.sha256.lower()
        raise DownloadVerificationFailed(
            f"The hub publishes no checksum for {filename}, so slmchat cannot check it and did not download it."
        )

    def _check_disk(self, needed: int) -> None:
        folder = self._library.paths.downloads
        free = self._disk_free(folder)
        if free < needed + DISK_HEADROOM:
            raise NotEnoughDiskSpace(
                f"This download needs {_size(needed + DISK_HEADROOM)} of free disk space, but only {_size(free)} "
                f"is free where slmchat keeps its models ({folder}). Free some space and try again."
            )

    def _fetch(
        self,
        hf: ModuleType,
        metadata: Any,
        part: Path,
        kept: int,
        filename: str,
        control: DownloadControl,
        on_progress: ProgressCallback | None,
    ) -> None:
        from huggingface_hub import file_download
        from huggingface_hub.utils import build_hf_headers

        headers = build_hf_headers(token=self._token or False)
        if _origin(metadata.location) != _origin(self.endpoint):
            headers.pop("authorization", None)  # a CDN link is signed; the token stays with the hub
        meter = _Meter(kept, metadata.size, control, on_progress)
        with _translated(filename, partial_kept=True), part.open("r+b") as handle:
            handle.seek(kept)
            try:
                file_download.http_get(
                    metadata.location,
                    handle,
                    resume_size=kept,
                    headers=headers,
                    expected_size=metadata.size,
                    displayed_filename=filename,
                    tqdm_class=functools.partial(_ProgressBar, meter),  # type: ignore[arg-type]
                )
            except Exception:
                if control.stopped:  # a shut socket surfaces as a network error: it was us
                    raise _Stopped() from None
                raise
        if on_progress is not None:
            on_progress(meter.snapshot())

    @staticmethod
    def _verify(part: Path, sha256: str, filename: str, control: DownloadControl) -> None:
        digest = hashlib.sha256()
        with part.open("rb") as handle:
            while block := handle.read(HASH_BLOCK):
                control.raise_if_stopped()
                digest.update(block)
        if digest.hexdigest() != sha256:
            raise DownloadVerificationFailed(
                f"The downloaded {filename} does not match the checksum the hub publishes for it, so it was deleted. "
                "Try downloading it again.",
                detail=f"expected {sha256}, got {digest.hexdigest()}",
            )

    def _api(self) -> Any:
        return _hf().HfApi(endpoint=self.endpoint, token=self._token or False)


def _join_split_parts(files: list[RemoteFile]) -> list[RemoteFile]:
    """`files` with the parts of each split model joined into one entry where its first part was listed.

    The entry is named after its first part (the one llama.cpp opens) and sized as the parts together;
    it carries no sha256 (each part has its own) and says why it gets no fit label.
    """
    splits: dict[str, list[tuple[int, int, RemoteFile]]] = {}  # name without numbering: (part, count, file)
    for file in files:
        part = split_part(file.filename)
        if part is not None:
            splits.setdefault(_SPLIT.sub("", file.filename), []).append((*part, file))
    joined = []
    for file in files:
        if split_part(file.filename) is None:
            joined.append(file)
            continue
        parts = sorted(splits.pop(_SPLIT.sub("", file.filename), []), key=lambda found: found[0])
        if not parts:  # joined at its first part already
            continue
        sizes = [found.size for _, _, found in parts if found.size is not None]
        joined.append(RemoteFile(
            file.repo_id, parts[0][2].filename, sum(sizes) if len(sizes) == len(parts) else None, None,
            file.quantization, fit_problem=SPLIT_PROBLEM.format(count=max(count for _, count, _ in parts)),
            parts=tuple(found.filename for _, _, found in parts),
        ))
    return joined


def _with_fit(file: RemoteFile, shape: GGUFInfo, machine: hardware.Machine, n_ctx: int) -> RemoteFile:
    """`file` labelled for `machine`: `shape` (another quantization of its model, maybe) with this file's weights.

    The bytes of a file that are not weights (metadata, tensor table, padding) hardly differ between
    a repo's quantizations, so this file's weights are its size minus `shape`'s non-weight bytes.
    """
    if file.size is None:
        return dataclasses.replace(file, fit_problem="The hub does not say how large this file is.")
    weights = max(0, file.size - (shape.file_size - shape.tensor_bytes))
    sized = dataclasses.replace(shape, file_size=file.size, tensor_bytes=weights)
    context = min(n_ctx, shape.context_length or n_ctx)
    return dataclasses.replace(file, fit=hardware.fit(hardware.estimate_memory(sized, context), machine))


# --- error translation ----------------------------------------------------------------------------
class _translated:
    """Turn huggingface_hub / httpx2 / OS errors into slmchat errors with plain messages."""

    def __init__(self, what: str, partial_kept: bool = False) -> None:
        self._what = what
        self._kept = partial_kept

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> bool:
        if error is None or isinstance(error, (SlmchatError, _Stopped)) or not isinstance(error, Exception):
            return False
        log.warning("hub request for %s failed: %s: %s", self._what, type(error).__name__, error)
        raise _translate(error, self._what, self._kept) from error


def _translate(error: Exception, what: str, partial_kept: bool) -> SlmchatError:
    import httpx2
    from huggingface_hub import errors as hf_errors

    again = " The part already downloaded is kept: try again to continue." if partial_kept else " Try again later."
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, hf_errors.GatedRepoError):
        return HubAccessDenied(
            f"{what} is gated: accept its licence on huggingface.co, then give slmchat your access token.", detail=detail
        )
    if isinstance(error, hf_errors.RepositoryNotFoundError):
        return HubNotFound(f"The hub has no model repo for {what} (or it is private).", detail=detail)
    if isinstance(error, (hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError)):
        return HubNotFound(f"The hub has no file {what}.", detail=detail)
    if isinstance(error, hf_errors.HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            return HubAccessDenied(f"The hub refused access to {what}. It may need an access token.", detail=detail)
        if status == 404:
            return HubNotFound(f"The hub has no {what}.", detail=detail)
        return HubUnreachable(f"The hub answered with an error ({status}) for {what}.{again}", detail=detail)
    if isinstance(error, (httpx2.TransportError, hf_errors.OfflineModeIsEnabled, ConnectionError)):
        return HubUnreachable(
            f"Could not reach Hugging Face for {what}. Check your internet connection.{again}", detail=detail
        )
    if isinstance(error, hf_errors.LocalEntryNotFoundError):
        return HubUnreachable(f"Could not reach Hugging Face for {what}.{again}", detail=detail)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return NotEnoughDiskSpace(f"The disk filled up while downloading {what}. Free some space and try again.", detail=detail)
    if isinstance(error, OSError) and "Consistency check failed" in str(error):
        return HubUnreachable(f"The download of {what} was cut short.{again}", detail=detail)
    return DownloadError(f"The download of {what} failed.{again}", detail=detail)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


def _printable(value: object) -> str:
    return repr(value)[1:-1] if isinstance(value, str) else repr(value)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1000**3:.2f} GB" if n_bytes >= 1000**3 else f"{n_bytes / 1000**2:,.0f} MB"
