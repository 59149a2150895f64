"""Memory: the app's RSS without the model's mapped file (goal: < 200 MB), with every part printed.

A child process runs the real app (app.build_window over a temporary data folder, offscreen)
with a 500-message chat open and the starter model loaded in its engine process; one reply is
streamed first, so the engine's KV cache (the chat fills the context) and compute buffers are
in use. Then this process reads, from the outside:
- the GUI process: RSS, USS and PSS (psutil);
- the engine process: RSS, and in /proc/PID/smaps the resident bytes of the .gguf file's
  mappings (the model's weights, which the OS can drop and re-read from disk at any time);
- both processes' RSS by kind of mapping (anonymous, shared libraries, files) from smaps;
- app total = GUI RSS + engine RSS - the model file's resident bytes (RSS counts shared
  libraries in both processes; the PSS total, which shares them out, is printed beside it).

    .venv/bin/python benchmarks/memory.py [--messages 500] [--threads T]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import common


def resident_by_kind(pid: int, model: Path) -> dict[str, dict[str, int]]:
    """Rss and Pss of process `pid` from /proc/PID/smaps, by what is mapped: the model file,
    shared libraries, other files, and anonymous memory (heap, llama.cpp's KV cache and compute
    buffers, Python's objects)."""
    wanted = str(model.resolve())
    totals: dict[str, dict[str, int]] = {}
    kind = "anonymous"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and not fields[0].endswith(":"):  # a mapping's header: address perms offset dev inode [path]
                path = " ".join(fields[5:])
                if path == wanted:
                    kind = "model file"
                elif not path or path.startswith("["):
                    kind = "anonymous"
                elif ".so" in Path(path).name:
                    kind = "shared libraries"
                else:
                    kind = "other files"
            elif fields and fields[0] in ("Rss:", "Pss:"):
                part = totals.setdefault(kind, {"rss": 0, "pss": 0})
                part[fields[0][:-1].lower()] += int(fields[1]) * 1024
    return totals


def serve_app(messages: int, threads: int | None) -> None:
    """The child: the app with a long chat open, a reply done; waits until told to exit."""
    from slmchat.core.generation import GenerationSettings

    filled: list[int] = []
    with common.AppUnderTest(threads=threads, context_size=4096, generation=GenerationSettings(max_tokens=64, seed=1),
                             prepare=lambda store: filled.append(common.fill_long_conversation(store, messages))
                             ) as app:
        info = app.start_model()
        app.controller.open_conversation(filled[0])
        timing = app.reply("Summarise our conversation in two sentences.", new_chat=False)
        print(json.dumps({"engine_pid": app.window.session.engine.pid, "model": str(info.path),
                          "n_ctx": info.n_ctx, "threads": info.n_threads, "prompt_tokens": timing.prompt_tokens,
                          "shown": app.controller.chat_model.rowCount()}), flush=True)
        sys.stdin.readline()


def measure(messages: int, threads: int | None) -> dict[str, Any]:
    import psutil

    child = subprocess.Popen([sys.executable, __file__, "--serve-app", "--messages", str(messages),
                              *common.threads_flag(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=common.ROOT)
    try:
        ready = json.loads(child.stdout.readline())
        gui = psutil.Process(child.pid).memory_full_info()
        engine = psutil.Process(ready["engine_pid"]).memory_full_info()
        gui_parts = resident_by_kind(child.pid, Path(ready["model"]))
        engine_parts = resident_by_kind(ready["engine_pid"], Path(ready["model"]))
    finally:
        if child.stdin:
            child.stdin.write("\n")
            child.stdin.flush()
        child.wait(timeout=120)
    model = engine_parts.get("model file", {"rss": 0, "pss": 0})
    engine_without_model = engine.rss - model["rss"]
    return {
        **ready, "model": Path(ready["model"]).name,  # results name the file, never this machine's path
        "gui_parts": gui_parts, "engine_parts": engine_parts,
        "gui_rss": gui.rss, "gui_uss": gui.uss, "gui_pss": gui.pss,
        "engine_rss": engine.rss, "engine_uss": engine.uss, "engine_pss": engine.pss,
        "model_file_rss": model["rss"], "model_file_pss": model["pss"],
        "model_file_size": Path(ready["model"]).stat().st_size,
        "engine_rss_without_model": engine_without_model,
        "total_without_model": gui.rss + engine_without_model,
        "total_pss_without_model": gui.pss + engine.pss - model["pss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    common.add_threads_argument(parser)
    parser.add_argument("--serve-app", action="store_true", help=argparse.SUPPRESS)
    common.add_common_arguments(parser, "memory")
    args = parser.parse_args()
    if args.serve_app:
        serve_app(args.messages, args.threads)
        return

    facts = common.machine()
    common.print_machine(facts)
    figures = measure(args.messages, args.threads)

    def mb(key: str) -> str:
        return f"{figures[key] / common.MIB:.1f} MB"

    print(f"model {Path(figures['model']).name}, n_ctx {figures['n_ctx']}, {figures['threads']} threads; "
          f"{figures['shown']} messages shown; the last reply's prompt {figures['prompt_tokens']} tokens")
    print(f"GUI process: RSS {mb('gui_rss')}, USS {mb('gui_uss')}, PSS {mb('gui_pss')}")
    print(f"engine process: RSS {mb('engine_rss')}, USS {mb('engine_uss')}, PSS {mb('engine_pss')}; "
          f"the .gguf mapping: resident {mb('model_file_rss')} (the file is {mb('model_file_size')})")
    print(f"engine RSS without the model file: {mb('engine_rss_without_model')}")
    for process in ("gui", "engine"):
        parts = ", ".join(f"{kind} {part['rss'] / common.MIB:.1f}" for kind, part in
                          sorted(figures[f"{process}_parts"].items(), key=lambda item: -item[1]["rss"]))
        print(f"  {process} RSS by mapping (MB): {parts}")
    print(f"app total (GUI RSS + engine RSS - model file): {mb('total_without_model')} (goal < 200 MB); "
          f"by PSS: {mb('total_pss_without_model')}")
    figures.update(machine=facts, goal_mb=200, load_average_after=common.load_average())
    common.save_results(args.results, args.key, figures)


if __name__ == "__main__":
    main()
