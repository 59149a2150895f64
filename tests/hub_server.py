"""A loopback Hugging Face Hub for tests: the endpoints huggingface_hub really calls, real GGUF bytes, fault knobs.

huggingface_hub 2.4 talks to `HF_ENDPOINT` with HEAD/GET `/{repo}/resolve/{rev}/{file}` (reading
`X-Repo-Commit`, `X-Linked-Etag`, `X-Linked-Size`, sending `Range` to resume), `/api/models` (search),
`/api/models/{repo}` and `/api/models/{repo}/revision/{rev}` (`?blobs=true` for sizes and sha256)
and `/api/models/{repo}/tree/{rev}` (docs/HUGGINGFACE_HUB.md). This server answers exactly those,
serves the bytes of real GGUF files, records every request, and can misbehave on purpose: cut the
connection at a byte offset, stall without sending, serve wrong bytes of the right length, claim an
enormous size, or gate a repo behind a token. Repos have a history like the real hub's: every
change (`commit`, `rename`, `reupload`) is a new commit, `main` is the newest, any older commit
still serves its own files, and `delete_repo` removes a repo with its history.
Use it through the `fake_hub` fixture (import it into a test module).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

BLOCK = 64 * 1024
COMMIT = "0123456789abcdef0123456789abcdef01234567"
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Faults:
    """How the next downloads misbehave. Offsets are positions in the file, not in one response."""

    drop_at: int | None = None  # cut the connection once the file position reaches this offset
    drop_times: int | None = 1  # how many responses are cut; None: every one that reaches drop_at
    stall_at: int | None = None  # stop sending (connection left open) at this offset ...
    stall_seconds: float = 30.0  # ... for this long at most, then cut the connection
    stall_times: int | None = 1  # how many responses stall; None: every one that reaches stall_at
    corrupt: bool = False  # same length, wrong bytes
    reported_size: int | None = None  # the size HEAD claims (X-Linked-Size), e.g. more than the free disk
    ignore_range: bool = False  # answer every GET with 200 and the whole file, as some servers do


@dataclass
class Request:
    """One request as the server saw it; `body_bytes` counts the file bytes actually written back."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body_bytes: int = 0


@dataclass
class HostedFile:
    path_in_repo: str
    data: Path
    size: int
    sha256: str


@dataclass
class Repo:
    repo_id: str
    history: list[tuple[str, dict[str, HostedFile]]]  # (commit, files), oldest first; the last is main
    token: str | None = None  # gated: only this token may download
    downloads: int = 0
    tags: list[str] = field(default_factory=lambda: ["gguf", "text-generation"])

    @property
    def files(self) -> dict[str, HostedFile]:
        return self.history[-1][1]

    @property
    def head(self) -> str:
        return self.history[-1][0]

    def at(self, revision: str) -> tuple[str, dict[str, HostedFile]] | None:
        """(commit, files) at a branch name or commit, or None when the revision does not exist."""
        if revision == "main":
            return self.history[-1]
        return next((snapshot for snapshot in self.history if snapshot[0] == revision), None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class FakeHub:
    """The server state: hosted repos, the request log, the fault knobs."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.faults = Faults()
        self.cdn: str | None = None  # like the real hub: resolve answers 302 to this origin's /cdn/...
        self.stalled = threading.Event()  # set while a response is stalled
        self._release = threading.Event()
        self._drops_done = 0
        self._stalls_done = 0
        self._lock = threading.Lock()
        self._hashes: dict[Path, str] = {}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        """Forget requests, faults and repos (the server keeps running between tests)."""
        self._release.set()
        with self._lock:
            self.repos.clear()
            self.requests.clear()
            self.faults = Faults()
            self.cdn = None
            self._drops_done = 0
            self._stalls_done = 0
        self.stalled.clear()
        self._release = threading.Event()

    def add_repo(self, repo_id: str, files: dict[str, Path], *, token: str | None = None, downloads: int = 0) -> Repo:
        """A repo whose first commit is COMMIT and holds `files` (name in the repo -> bytes on disk)."""
        repo = Repo(repo_id, [(COMMIT, self._hosted(files))], token=token, downloads=downloads)
        self.repos[repo_id] = repo
        return repo

    def commit(self, repo_id: str, add: dict[str, Path] | None = None, remove: tuple[str, ...] = ()) -> str:
        """A new commit on main: files added or replaced, files removed; returns its 40-hex id."""
        repo = self.repos[repo_id]
        files = {name: hosted for name, hosted in repo.files.items() if name not in remove}
        files.update(self._hosted(add or {}))
        commit = hashlib.sha1(f"{repo_id}#{len(repo.history)}".encode()).hexdigest()
        repo.history.append((commit, files))
        return commit

    def rename(self, repo_id: str, old: str, new: str) -> str:
        """Rename a file in a new commit (older commits keep the old name)."""
        return self.commit(repo_id, {new: self.repos[repo_id].files[old].data}, remove=(old,))

    def reupload(self, repo_id: str, name: str, data: Path) -> str:
        """Replace a file's bytes under the same name in a new commit."""
        return self.commit(repo_id, {name: data})

    def delete_repo(self, repo_id: str) -> None:
        self.repos.pop(repo_id)

    def _hosted(self, files: dict[str, Path]) -> dict[str, HostedFile]:
        hosted = {}
        for name, data in files.items():
            if data not in self._hashes:
                self._hashes[data] = sha256_of(data)
            hosted[name] = HostedFile(name, data, data.stat().st_size, self._hashes[data])
        return hosted

    def release_stall(self) -> None:
        self._release.set()

    def downloads_of(self, filename: str) -> list[Request]:
        """The GET requests for one file, in order."""
        return [r for r in list(self.requests) if r.method == "GET" and "/resolve/" in r.path and r.path.endswith("/" + filename)]

    def bytes_served(self, filename: str) -> int:
        """File bytes actually written back for one file, over all its GETs."""
        return sum(r.body_bytes for r in self.downloads_of(filename))

    # --- used by the handler -------------------------------------------------------------
    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def take_drop(self) -> bool:
        with self._lock:
            if self.faults.drop_times is not None and self._drops_done >= self.faults.drop_times:
                return False
            self._drops_done += 1
            return True

    def take_stall(self) -> bool:
        with self._lock:
            if self.faults.stall_times is not None and self._stalls_done >= self.faults.stall_times:
                return False
            self._stalls_done += 1
            return True

    def wait_released(self, seconds: float) -> None:
        self.stalled.set()
        self._release.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1.0"

    @property
    def hub(self) -> FakeHub:
        return self.server.hub  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        request = Request(
            method=self.command,
            path=unquote(parts.path),
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        self.hub.record(request)
        try:
            self._route(request, parts.path)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def _route(self, request: Request, raw_path: str) -> None:
        path = request.path
        if path == "/api/models":
            return self._search(request)
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if match:
            return self._model_info(request, match.group(1), match.group(2) or "main")
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path)
        if match:
            return self._tree(match.group(1), match.group(2))
        # The file name is taken from the raw path so an encoded hostile name stays recognisable.
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", raw_path)
        if match:
            return self._resolve(request, unquote(match.group(1)), unquote(match.group(3)), unquote(match.group(2)))
        match = re.fullmatch(r"/cdn/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)", raw_path)
        if match:
            return self._resolve(request, unquote(match.group(1)), unquote(match.group(3)), match.group(2), from_cdn=True)
        self._send_json({"error": "Not found"}, status=404)

    # --- metadata -----------------------------------------------------------------------
    def _search(self, request: Request) -> None:
        search = request.query.get("search", [""])[0].lower()
        wanted_tags = request.query.get("filter", [])
        limit = int(request.query.get("limit", ["1000"])[0])
        found = [
            self._summary(repo)
            for repo in self.hub.repos.values()
            if search in repo.repo_id.lower() and all(tag in repo.tags for tag in wanted_tags)
        ]
        found.sort(key=lambda item: -item["downloads"])
        self._send_json(found[:limit])

    def _summary(self, repo: Repo) -> dict:
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "likes": 0,
            "downloads": repo.downloads,
            "trendingScore": 0,
            "private": False,
            "gated": "manual" if repo.token else False,
            "tags": repo.tags,
            "pipeline_tag": "text-generation",
            "library_name": "gguf",
            "createdAt": "2024-01-01T00:00:00.000Z",
        }

    def _snapshot(self, repo_id: str, revision: str) -> tuple[Repo, str, dict[str, HostedFile]] | None:
        """The repo and its (commit, files) at `revision`, or None after answering 404 as the hub does."""
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        snapshot = repo.at(revision)
        if snapshot is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return None
        return repo, *snapshot

    def _model_info(self, request: Request, repo_id: str, revision: str) -> None:
        found = self._snapshot(repo_id, revision)
        if found is None:
            return
        repo, commit, files = found
        blobs = request.query.get("blobs", ["false"])[0] == "true"
        siblings = []
        for hosted in files.values():
            sibling: dict = {"rfilename": hosted.path_in_repo}
            if blobs:
                sibling.update(
                    size=hosted.size,
                    blobId=hashlib.sha1(hosted.sha256.encode()).hexdigest(),
                    lfs={"sha256": hosted.sha256, "size": hosted.size, "pointerSize": 133},
                )
            siblings.append(sibling)
        info = self._summary(repo) | {
            "sha": commit,
            "lastModified": "2024-01-01T00:00:00.000Z",
            "disabled": False,
            "siblings": siblings,
        }
        self._send_json(info)

    def _tree(self, repo_id: str, revision: str) -> None:
        found = self._snapshot(repo_id, revision)
        if found is None:
            return
        _, _, files = found
        entries = [
            {
                "type": "file",
                "oid": hashlib.sha1(hosted.sha256.encode()).hexdigest(),
                "size": hosted.size,
                "path": hosted.path_in_repo,
                "lfs": {"oid": hosted.sha256, "size": hosted.size, "pointerSize": 133},
            }
            for hosted in files.values()
        ]
        self._send_json(entries)

    # --- file bytes -----------------------------------------------------------------------
    def _resolve(self, request: Request, repo_id: str, filename: str, revision: str, from_cdn: bool = False) -> None:
        found = self._snapshot(repo_id, revision)
        if found is None:
            return
        repo, commit, files = found
        if repo.token is not None and not from_cdn:  # the CDN link is signed: no token needed
            given = request.headers.get("authorization", "")
            if not given:
                return self._error(401, "GatedRepo", "Access to this model is restricted.")
            if given != f"Bearer {repo.token}":
                return self._error(403, "GatedRepo", "Access to this model is restricted.")
        hosted = files.get(filename)
        if hosted is None:
            return self._error(404, "EntryNotFound", "Entry not found", commit=commit)
        faults = self.hub.faults
        headers = {
            "X-Repo-Commit": commit,
            "X-Linked-Etag": f'"{hosted.sha256}"',
            "ETag": f'"{hosted.sha256}"',
            "X-Linked-Size": str(faults.reported_size or hosted.size),
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'attachment; filename="{Path(filename).name}";',
        }
        if self.hub.cdn and not from_cdn:
            self.send_response(302)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Location", f"{self.hub.cdn}/cdn/{repo_id}/{commit}/{filename}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = 0, hosted.size  # end: one past the last byte sent
        wanted = RANGE.match(request.headers.get("range", ""))
        if request.method == "GET" and wanted and not faults.ignore_range:
            start = int(wanted.group(1))
            if wanted.group(2):
                end = min(end, int(wanted.group(2)) + 1)
            if start >= hosted.size or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{hosted.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        partial = start > 0 or end < hosted.size
        self.send_response(206 if partial else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{hosted.size}")
        self.end_headers()
        if request.method == "GET":
            self._send_file(request, hosted, start, end)

    def _send_file(self, request: Request, hosted: HostedFile, start: int, end: int) -> None:
        faults = self.hub.faults
        position = start
        with hosted.data.open("rb") as handle:
            handle.seek(start)
            while position < end:
                stop = min(end, position + BLOCK)
                for fault_at in (faults.drop_at, faults.stall_at):
                    if fault_at is not None and position < fault_at < stop:
                        stop = fault_at
                if faults.stall_at is not None and position == faults.stall_at and self.hub.take_stall():
                    self.hub.wait_released(faults.stall_seconds)
                    return self._cut()
                if faults.drop_at is not None and position == faults.drop_at and self.hub.take_drop():
                    return self._cut()
                block = handle.read(stop - position)
                if faults.corrupt:
                    block = _corrupt(block, position, hosted.size)
                self.wfile.write(block)
                request.body_bytes += len(block)
                position = stop
        self.wfile.flush()

    def _cut(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --- helpers ----------------------------------------------------------------------------
    def _error(self, status: int, code: str, message: str, *, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload: object, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def _corrupt(block: bytes, position: int, size: int) -> bytes:
    """Flip the bytes of one 4 KiB stretch in the middle of the file: same length, still parses, wrong hash."""
    middle = size // 2
    low, high = max(position, middle), min(position + len(block), middle + 4096)
    if low >= high:
        return block
    damaged = bytearray(block)
    for index in range(low - position, high - position):
        damaged[index] ^= 0xFF
    return bytes(damaged)


_shared: FakeHub | None = None


def shared_hub() -> FakeHub:
    """One server per test session (started on first use, stopped at exit); tests reset it."""
    global _shared
    if _shared is None:
        _shared = FakeHub().start()
        atexit.register(_shared.stop)
    return _shared


@pytest.fixture
def fake_hub(smollm2_path: Path) -> Iterator[FakeHub]:
    """The running fake hub, reset, hosting SmolLM2 as `test-org/SmolLM2-135M-Instruct-GGUF`."""
    hub = shared_hub()
    hub.reset()
    hub.add_repo("test-org/SmolLM2-135M-Instruct-GGUF", {smollm2_path.name: smollm2_path}, downloads=100)
    yield hub
    hub.release_stall()
