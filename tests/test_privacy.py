"""Nothing leaves the machine except what the user asked for: proven in every Python process of ours.

Each run starts real processes with tests/privacy_audit/ first on PYTHONPATH, so every one of them
(the window, slmchat-cli, and the model processes they spawn) installs an audit hook at start-up
that logs, with its pid, every socket created, connection, address look-up, datagram, urllib
request and program started (tests/privacy_audit/sitecustomize.py). None of the privacy switches
is in their environment: slmchat must set them itself.

- Offline, as a user meets the app: a chat from the terminal (the model in its process), a task
  model (MiniLM embeddings, in its process), then the window started for real (`python -m
  slmchat`), which opens on that chat and loads the last used model into its process, left
  running a few seconds and ended. The log must show every one of those processes, and not one
  network socket, connection or look-up. Local sockets (AF_UNIX: multiprocessing's pipes) are not
  network: they are logged and allowed.
- Native code: the audit hook sees only what goes through Python. Qt's C++ (its single-instance
  QLocalServer, a local socket too) and llama.cpp do not, so where strace is installed the same
  window start runs under it, and no system call of the window or its model process may name an
  internet address family.
- Online, as the user starts it: a hub search in the window's model manager, a listing and a
  download from the terminal, and a download in-process with huggingface_hub imported before
  slmchat. Connections and look-ups may go to the hub searched (the loopback fake hub) and nowhere
  else, and the hub must have seen only the requests those actions need.
- Controls: a connection and a look-up injected from the test side into every process (the model
  process included) are reported; bare huggingface_hub, with nobody turning telemetry off, sends
  a request the user never asked for, which the hub sees.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import minilm_gguf
import psutil
import pytest
from hub_server import COMMIT
from model_cache import MODEL_CACHE

from slmchat.core.store.store import Store
from slmchat.paths import Paths
from slmchat.settings import Settings, save_settings

if TYPE_CHECKING:
    from hub_server import FakeHub

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
ROOT = Path(__file__).resolve().parents[1]
AUDIT_DIR = Path(__file__).resolve().parent / "privacy_audit"
LOG_ENV = "SLMCHAT_PRIVACY_AUDIT_LOG"
INJECT_ENV = "SLMCHAT_PRIVACY_AUDIT_INJECT"
PRIVACY_SWITCHES = {"HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY", "HF_HUB_DISABLE_XET", "HF_TOKEN", "HF_ENDPOINT",
                    LOG_ENV, INJECT_ENV}
# Programs our processes may start, and why: nvidia-smi reads a GPU's memory (core/models/hardware.py).
LOCAL_PROGRAMS = {"nvidia-smi"}
LOCAL_FAMILY = "AF_UNIX"
STRACE = shutil.which("strace")


# --- the log ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AuditLog:
    """The audit hook's lines, all processes together."""

    records: list[dict]

    @classmethod
    def read(cls, path: Path) -> AuditLog:
        return cls([json.loads(line) for line in path.read_text().splitlines()])

    def starts(self) -> dict[int, dict]:
        """pid: the process's start line (parent pid, command line)."""
        return {r["pid"]: r for r in self.records if r["event"] == "start"}

    def of(self, pid: int, event: str) -> list[dict]:
        return [r for r in self.records if r["pid"] == pid and r["event"] == event]

    def model_processes_of(self, parent: int) -> list[int]:
        """Children that multiprocessing spawned for `parent` and that loaded llama.cpp."""
        return [
            pid for pid, start in self.starts().items()
            if start["ppid"] == parent and "--multiprocessing-fork" in start["argv"]
            and any("libllama" in (r["library"] or "") for r in self.of(pid, "ctypes.dlopen"))
        ]

    def network_use(self, hub: tuple[str, int] | None = None) -> list[str]:
        """Every network socket, connection, look-up or request not to `hub`, as `pid argv: event`."""
        host = hub[0] if hub else None
        starts = self.starts()
        found = []
        for record in self.records:
            event = record["event"]
            if event == "socket.__new__":
                allowed = record["family"] == LOCAL_FAMILY or (hub is not None and record["family"] == "AF_INET")
            elif event in ("socket.connect", "socket.sendto"):
                allowed = record["family"] == LOCAL_FAMILY or (hub is not None and tuple(record["address"][:2]) == hub)
            elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
                allowed = host is not None and record["host"] == host
            elif event == "urllib.Request":
                allowed = host is not None and record["url"].startswith(f"http://{host}:{hub[1]}/")
            else:
                continue
            if not allowed:
                found.append(f"{record['pid']} {starts[record['pid']]['argv']}: {record}")
        return found

    def destinations(self) -> set[tuple[str, int]]:
        """(host, port) of every network connection or datagram."""
        return {tuple(r["address"][:2]) for r in self.records
                if r["event"] in ("socket.connect", "socket.sendto") and r["family"] != LOCAL_FAMILY}

    def programs_started(self) -> set[str]:
        return {Path(r["program"]).name for r in self.records
                if r["event"] in ("subprocess.Popen", "os.exec", "os.posix_spawn", "os.system")}


def audited_env(log: Path, home: Path, hub: FakeHub | None = None, inject: str | None = None) -> dict[str, str]:
    """This environment minus every privacy switch, plus the audit hook, the data folder and the hub."""
    env = {key: value for key, value in os.environ.items() if key not in PRIVACY_SWITCHES}
    env.update(
        PYTHONPATH=os.pathsep.join([str(AUDIT_DIR), str(ROOT)]),
        SLMCHAT_HOME=str(home),
        HF_HOME=str(home.parent / "hf-home"),
        QT_QPA_PLATFORM="offscreen",
        NO_PROXY="127.0.0.1,localhost",
        **{LOG_ENV: str(log)},
    )
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    if inject is not None:
        env[INJECT_ENV] = inject
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def cli(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """One slmchat-cli command, to its end; the Popen keeps its pid for the log."""
    process = subprocess.Popen([sys.executable, "-m", "slmchat.cli", *args], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return process


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# --- offline: the window, a chat, a task model ---------------------------------------------------
@dataclass(frozen=True)
class OfflineSession:
    log: AuditLog
    chat: int  # pids of the processes the test started
    embed: int
    window: int
    trace: Path | None  # the window's system calls (strace), when strace is installed


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_the_window_for_a_few_seconds(env: dict[str, str], log_path: Path, prefix: tuple[str, ...] = ()) -> int:
    """`python -m slmchat` (run by `prefix`, if given) until its model process has loaded llama.cpp, 3 s more.

    Then SIGTERM ends the window without its close handlers; the model process stops when its
    pipe closes. A process of ours still alive after that is killed, and reported. Returns the
    window's pid.
    """
    launcher = subprocess.Popen([*prefix, sys.executable, "-m", "slmchat"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def window() -> int | None:
        log = AuditLog.read(log_path) if log_path.exists() else AuditLog([])
        return next((pid for pid, start in log.starts().items() if start["argv"][-2:] == ["-m", "slmchat"]
                     and log.model_processes_of(pid)), None)

    try:
        wait_for(lambda: window() is not None or launcher.poll() is not None, 60,
                 "the window's model process to load llama.cpp")
        assert launcher.poll() is None, launcher.stderr.read()[-3000:]
        time.sleep(3)
    finally:
        os.kill(window() or launcher.pid, signal.SIGTERM)
        launcher.communicate(timeout=30)
    leftovers = [pid for pid in AuditLog.read(log_path).starts() if alive(pid)]
    deadline = time.monotonic() + 10
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = [pid for pid in leftovers if alive(pid)]
    for pid in leftovers:
        psutil.Process(pid).kill()
    assert not leftovers, f"processes of the window still running after it ended: {leftovers}"
    pid = window()
    assert pid is not None
    return pid


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> OfflineSession:
    folder = tmp_path_factory.mktemp("privacy-offline")
    log_path, home = folder / "audit.jsonl", folder / "slmchat-home"
    store = Store(Paths.at(home).ensure().database)
    save_settings(store, Settings(n_threads=1))  # the model the window loads uses one thread
    store.close()
    env = audited_env(log_path, home)
    chat = cli(["chat", "--prompt", "Say hello.", "--max-tokens", "8", "--threads", "1"], env)
    embed = cli(["embed", "--model", str(minilm_gguf.cached_gguf(MODEL_CACHE)), "--threads", "1", "a cat"], env)
    # The chat left a conversation, so the window opens on it (no welcome page) and loads the starter.
    trace = folder / "strace.txt" if STRACE else None
    window = start_the_window_for_a_few_seconds(env, log_path, (
        STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=execve,socket,connect,sendto,sendmsg", "-o", str(trace),
    ) if trace else ())
    return OfflineSession(AuditLog.read(log_path), chat.pid, embed.pid, window, trace)


def test_every_process_of_ours_runs_the_audit_including_the_model_processes_they_spawn(offline):
    starts = offline.log.starts()
    for parent in (offline.chat, offline.embed, offline.window):
        assert parent in starts, f"no audit line from {parent}: the hook did not run"
        assert offline.log.model_processes_of(parent), f"no model process of {starts[parent]['argv']} in the log"
    assert starts[offline.window]["argv"][-2:] == ["-m", "slmchat"]
    assert any(r["module"] == "PySide6.QtWidgets" for r in offline.log.of(offline.window, "import"))


def test_the_window_a_terminal_chat_and_a_task_model_use_no_network_at_all(offline):
    """Not one internet socket, connection, look-up or request, in any of their processes."""
    assert offline.log.network_use() == []
    local = [r for r in offline.log.records if r["event"] == "socket.__new__"]
    assert local and {r["family"] for r in local} == {LOCAL_FAMILY}  # the pipes to the model processes


def test_the_only_programs_our_processes_start_are_local_hardware_probes(offline):
    assert offline.log.programs_started() <= LOCAL_PROGRAMS


@pytest.mark.skipif(STRACE is None, reason="strace is not installed")
def test_native_code_in_the_window_and_its_model_process_opens_no_internet_socket_either(offline):
    """The audit hook sees Python's socket module only; strace sees the system calls of Qt and llama.cpp too."""
    calls = [(int(pid), call) for pid, call in  # strace pads the pid column: "4440  socket(...)"
             (line.split(maxsplit=1) for line in offline.trace.read_text().splitlines())]
    traced = {pid for pid, _call in calls}
    assert {offline.window, *offline.log.model_processes_of(offline.window)} <= traced
    assert [call for _pid, call in calls if "AF_INET" in call] == []  # AF_INET6 too
    assert (offline.window, "socket(AF_UNIX") in {(pid, call[:14]) for pid, call in calls}  # Qt's single-instance
    # server: native code, which the audit hook cannot see, but strace does


# --- online: what the user starts -------------------------------------------------------------------
SEARCH_IN_THE_WINDOW = r"""
import sys, time
from PySide6.QtWidgets import QApplication
from slmchat.app import build_window, resolve_paths, start_background_work
from slmchat.core.models.catalog import load_catalog

app = QApplication([])
window = build_window(resolve_paths(), app)
window.show()
start_background_work(window)

def wait(condition):
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline
        app.processEvents()
        time.sleep(0.01)

wait(lambda: window.machine is not None)
dialog = window.model_manager(load_catalog())
dialog.show()
search = dialog.tabs.widget(2)
search.query.setText(sys.argv[1])
search.query.returnPressed.emit()
wait(lambda: search.repos.count() > 0)
search.repos.setCurrentRow(0)
wait(lambda: search.files.count() > 0)
print(search.repos.item(0).text())
print(search.files.item(0).text())
window.close()
"""


def hub_address(hub: FakeHub) -> tuple[str, int]:
    return "127.0.0.1", hub.port


def test_a_hub_search_in_the_window_reaches_only_the_hub_searched(fake_hub, tmp_path, smollm2_path):
    log_path = tmp_path / "audit.jsonl"
    result = run(["-c", SEARCH_IN_THE_WINDOW, "SmolLM2"], audited_env(log_path, tmp_path / "home", fake_hub))
    assert result.returncode == 0, result.stderr[-3000:]
    found, listed = result.stdout.splitlines()[-2:]
    assert REPO in found and smollm2_path.name in listed

    log = AuditLog.read(log_path)
    assert log.destinations() == {hub_address(fake_hub)}
    assert log.network_use(hub_address(fake_hub)) == []
    assert {r.path for r in fake_hub.requests} == {
        "/api/models",  # the search
        f"/api/models/{REPO}",  # the files of the repo picked
        f"/{REPO}/resolve/{COMMIT}/{smollm2_path.name}",  # each file's header, for its fit label
    }


def test_listing_and_downloading_from_the_terminal_reach_only_the_hub(fake_hub, tmp_path, smollm2_path):
    log_path = tmp_path / "audit.jsonl"
    env = audited_env(log_path, tmp_path / "home", fake_hub)
    listing = run(["-m", "slmchat.cli", "download", REPO], env)
    assert listing.returncode == 1 and smollm2_path.name in listing.stderr  # "Say which file ...: its GGUF files"
    cli(["download", REPO, smollm2_path.name], env)

    log = AuditLog.read(log_path)
    assert log.destinations() == {hub_address(fake_hub)}
    assert log.network_use(hub_address(fake_hub)) == []
    assert {r.path for r in fake_hub.requests} == {
        f"/api/models/{REPO}",  # the listing: the repo's files ...
        f"/{REPO}/resolve/{COMMIT}/{smollm2_path.name}",  # ... each with its header, for its fit label
        f"/{REPO}/resolve/main/{smollm2_path.name}",  # the download
    }


DOWNLOAD_IN_PROCESS = r"""
import sys
mode, repo, filename = sys.argv[1:4]
if mode == "bare-huggingface-hub":
    import huggingface_hub
    huggingface_hub.hf_hub_download(repo, filename)
else:
    if mode == "huggingface-hub-imported-first":
        # Before slmchat could set the environment (huggingface_hub loads submodules lazily,
        # so the constants must be touched for them to be read now).
        from huggingface_hub import constants, file_download
        assert not constants.HF_HUB_DISABLE_TELEMETRY
    import slmchat.cli
    from slmchat.cli import main
    from slmchat.core.gguf import check as gguf_check
    from slmchat.core.models import catalog, hardware, hub, library
    from slmchat.paths import Paths
    models = library.ModelLibrary(Paths.default().ensure())
    models.cleanup_stale()
    models.list()
    assert main(["models"]) == 0
    hub.Hub(models).download(repo, filename)
"""


def download_in_process(mode: str, hub: FakeHub, tmp_path: Path, filename: str) -> AuditLog:
    log_path = tmp_path / "audit.jsonl"
    result = run(["-c", DOWNLOAD_IN_PROCESS, mode, REPO, filename], audited_env(log_path, tmp_path / "home", hub))
    assert result.returncode == 0, result.stderr[-3000:]
    return AuditLog.read(log_path)


@pytest.mark.parametrize("mode", ["slmchat", "huggingface-hub-imported-first"])
def test_only_the_download_the_user_started_reaches_the_network(mode, fake_hub, tmp_path, smollm2_path):
    log = download_in_process(mode, fake_hub, tmp_path, smollm2_path.name)

    assert log.destinations() == {hub_address(fake_hub)}
    assert log.network_use(hub_address(fake_hub)) == []
    assert [(r.method, r.path) for r in fake_hub.requests] == [
        ("HEAD", f"/{REPO}/resolve/main/{smollm2_path.name}"),
        ("GET", f"/{REPO}/resolve/main/{smollm2_path.name}"),
    ]


# --- controls: the checks can fail ---------------------------------------------------------------------
@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback TCP port no one of ours has any business connecting to."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        yield server


def accepted(server: socket.socket) -> int:
    server.settimeout(0.5)
    count = 0
    try:
        while True:
            server.accept()[0].close()
            count += 1
    except TimeoutError:
        return count


def test_the_audit_reports_a_connection_and_a_look_up_in_every_process_the_model_process_included(
    listener, tmp_path
):
    port = listener.getsockname()[1]
    log_path = tmp_path / "audit.jsonl"
    env = audited_env(log_path, tmp_path / "home", inject=f"127.0.0.1:{port}")
    chat = cli(["chat", "--no-store", "--prompt", "Say hello.", "--max-tokens", "4", "--threads", "1"], env)

    log = AuditLog.read(log_path)
    processes = set(log.starts())  # the command, multiprocessing's resource tracker, the model process
    (model_process,) = log.model_processes_of(chat.pid)
    assert {chat.pid, model_process} < processes
    reported = log.network_use()
    for pid in processes:
        assert any(line.startswith(f"{pid} ") and f"'address': ['127.0.0.1', {port}]" in line for line in reported)
        assert any(line.startswith(f"{pid} ") and "'host': 'localhost'" in line for line in reported)
    assert accepted(listener) == len(processes)  # the connections were real


def test_the_hub_sees_huggingface_hubs_own_telemetry_request_when_nobody_turns_it_off(
    fake_hub, tmp_path, smollm2_path
):
    """Control: bare huggingface_hub, nobody turning telemetry off, sends a request the user never asked for."""
    download_in_process("bare-huggingface-hub", fake_hub, tmp_path, smollm2_path.name)
    assert "/api/agent-harnesses" in [r.path for r in fake_hub.requests]
