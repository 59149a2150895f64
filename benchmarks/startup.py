"""Start-up: process start to a usable main window (goal: < 1 s), and the model's load time.

Each run is a fresh interpreter (`python -c`) that runs the app's real `slmchat.app.main()`,
offscreen, over a prepared data folder; the only addition is an observer wrapped around
`build_window` that installs an application event filter: the first Paint event, then the next
turn of the event loop (the paint done) is "usable". Times are measured from the process's
creation as the kernel recorded it (psutil's create_time, on the boot-time clock), so the
interpreter's own start and every import count. The child then waits for the start-up model
load the app begins by itself (process start -> model ready), closes the window and exits.
Two data folders: a first run (the welcome page) and a returning user (100 chats in the sidebar,
the starter model loading at start). One more run under `python -X importtime` lists the
slowest imports. Model load alone: EngineClient spawn + load of SmolLM2, timed from the caller.

    .venv/bin/python benchmarks/startup.py [--runs 5] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

CHILD = r"""
import json, time
from slmchat import app as slmchat_app

clock = lambda: time.clock_gettime(time.CLOCK_BOOTTIME)
marks = {"main": clock()}
build_window = slmchat_app.build_window

def observed_build_window(paths, app):
    from PySide6.QtCore import QEvent, QObject, QTimer
    marks["qt_app"] = clock()
    window = build_window(paths, app)
    marks["built"] = clock()

    def painted():
        marks["painted"] = clock()
        wait_for_model()

    def wait_for_model():
        session = window.session
        if window.machine is not None and "hardware_detected" not in marks:
            marks["hardware_detected"] = clock()
        if session.is_loading or window.machine is None:
            QTimer.singleShot(5, wait_for_model)
            return
        if session.engine is not None and "model_ready" not in marks:
            marks["model_ready"] = clock()
        window.close()
        app.quit()

    class FirstPaint(QObject):
        def eventFilter(self, watched, event):
            if event.type() == QEvent.Type.Paint and "first_paint" not in marks:
                marks["first_paint"] = clock()
                QTimer.singleShot(0, painted)
            return False

    observer = FirstPaint(app)
    app.installEventFilter(observer)
    return window

slmchat_app.build_window = observed_build_window
code = slmchat_app.main([])
import psutil
created = psutil.Process().create_time() - psutil.boot_time()  # since boot, as CLOCK_BOOTTIME
print(json.dumps({"exit": code, **{name: at - created for name, at in marks.items()}}))
"""


def prepare_returning_user(home: Path) -> None:
    """A data folder as after weeks of use: 100 chats of 10 messages, settings saved."""
    os.environ["SLMCHAT_HOME"] = str(home)
    from slmchat.core.store.store import Store
    from slmchat.paths import Paths

    paths = Paths.default().ensure()
    store = Store(paths.database)
    for number in range(100):
        common.fill_long_conversation(store, 10, title=f"Chat number {number}")
    store.close()
    del os.environ["SLMCHAT_HOME"]


def one_start(home: Path, extra_flags: list[str] = ()) -> tuple[dict[str, float], float, str]:
    """Run the app once in a fresh interpreter; its marks, the caller's wall time, its stderr."""
    env = {**os.environ, "SLMCHAT_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    started = time.perf_counter()
    result = subprocess.run([sys.executable, *extra_flags, "-c", CHILD], check=False, capture_output=True, text=True,
                            env=env, cwd=common.ROOT, timeout=300)
    wall = time.perf_counter() - started
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"the app did not start: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1]), wall, result.stderr


def slowest_imports(stderr: str, top: int = 12) -> list[tuple[str, float]]:
    """From `-X importtime` output: the packages that cost most, by their outermost import's
    cumulative ms; the app's own modules by their self time (their children are listed apart)."""
    costs: dict[str, float] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        name = name.strip()
        root = name.split(".")[0]
        key, ms = (name, int(self_us) / 1000) if root == "slmchat" else (root, int(cumulative_us) / 1000)
        costs[key] = max(costs.get(key, 0.0), ms)
    return sorted(costs.items(), key=lambda item: -item[1])[:top]


def model_load_times(runs: int, threads: int | None) -> list[float]:
    from slmchat.core.generation import EngineConfig
    from slmchat.core.process.engine_client import EngineClient
    from slmchat.paths import Paths, starter_model

    config = EngineConfig(starter_model(), n_ctx=4096, n_threads=threads)
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="startup-load-") as home:
            started = time.perf_counter()
            client = EngineClient(config, paths=Paths.at(home))
            times.append(time.perf_counter() - started)
            client.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    common.add_threads_argument(parser)
    common.add_common_arguments(parser, "startup")
    args = parser.parse_args()

    facts = common.machine()
    common.print_machine(facts)
    figures: dict[str, Any] = {"machine": facts, "goal_s": 1.0}
    with tempfile.TemporaryDirectory(prefix="startup-") as scratch:
        homes = {"first_run": Path(scratch) / "first", "returning_user": Path(scratch) / "returning"}
        homes["first_run"].mkdir()
        prepare_returning_user(homes["returning_user"])
        one_start(homes["first_run"])  # warms the file cache: every figure below is a warm start
        for label, home in homes.items():
            runs = [one_start(home)[:2] for _ in range(args.runs)]
            marks = [mark for mark, _ in runs]
            usable = common.median(mark["painted"] for mark in marks)
            summary = {key: common.median(mark[key] for mark in marks) for key in marks[0] if key != "exit"}
            ready = [mark["model_ready"] for mark in marks if "model_ready" in mark]
            each = ", ".join(f"{mark['painted']:.2f}" for mark in marks)
            print(f"{label}: process start -> usable window {usable:.3f} s (median of {args.runs}; runs "
                  f"{each}); caller's wall time to exit "
                  f"{common.median(wall for _, wall in runs):.2f} s")
            print("  milestones from process start (s): " + ", ".join(f"{key} {value:.3f}" for key, value in summary.items()))
            if ready:
                print(f"  process start -> starter model loaded, ready to answer: {common.median(ready):.2f} s")
            figures[label] = {"usable_s": usable, "milestones": summary, "runs": marks}
        # The first-run folder: no engine process, whose imports would mix into the same stderr.
        _marks, _wall, stderr = one_start(homes["first_run"], ["-X", "importtime"])
        imports = slowest_imports(stderr)
        print("slowest imports (one first-run start under -X importtime, which slows it; packages by "
              "cumulative ms, slmchat modules by self ms):")
        for name, ms in imports:
            print(f"  {ms:8.1f} ms  {name}")
        figures["slowest_imports"] = imports
    loads = model_load_times(args.runs, args.threads)
    print(f"model load (EngineClient spawn + load of SmolLM2, {common.describe_threads(args.threads)}, n_ctx 4096): median "
          f"{common.median(loads):.2f} s (runs {', '.join(f'{t:.2f}' for t in loads)})")
    figures["model_load_s"] = common.median(loads)
    figures["model_load_runs"] = loads
    figures["load_average_after"] = common.load_average()
    common.save_results(args.results, args.key, figures)


if __name__ == "__main__":
    main()
