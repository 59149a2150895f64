"""Memory: the window's process (goal <= 120 MB RSS) and the model process against llama.cpp itself
(goal: engine RSS - llama.cpp's RSS <= 40 MB), with every part printed.

A child process runs the real app (app.build_window over a temporary data folder, offscreen)
with a 500-message chat open and the starter model loaded in its engine process; one reply is
streamed first, so the engine's KV cache (the chat fills the context) and compute buffers are
in use. While it stays so, the reference runs: `llama-rss` (benchmarks/llama_rss.c, built by
build_llama_rss.sh from the llama.cpp source that llama-cpp-python vendors), llama.cpp's C API
without Python, with the engine's own settings read from the loaded model (n_ctx, flash
attention, key cache type, ubatch, extra buffer types, threads; batch 512 and the mmapped model
file as the engine uses them), the same prompt depth and reply length. This process reads, from
the outside, for the GUI process, the engine process and the reference:
- RSS, USS and PSS (psutil);
- in /proc/PID/smaps the resident bytes by kind of mapping: the .gguf file (the model's
  weights, which the OS can drop and re-read from disk at any time), shared libraries, other
  files, anonymous memory.
The figures: GUI RSS; engine RSS - reference RSS (what Python and the app add to llama.cpp),
also without the model file on both sides; and, as before, the app total = GUI RSS + engine RSS
- the model file's resident bytes.

    .venv/bin/python benchmarks/memory.py [--messages 500] [--threads T] [--reference PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import common

GUI_GOAL_MB = 120
ENGINE_OVER_LLAMA_GOAL_MB = 40
ENGINE_N_BATCH = 512  # backend.context_params' batch, which the engine uses
BUILD_SCRIPT = common.ROOT / "benchmarks" / "build_llama_rss.sh"


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
                          "completion_tokens": timing.completion_tokens, "engine": info.extra,
                          "shown": app.controller.chat_model.rowCount()}), flush=True)
        sys.stdin.readline()


def reference_command(binary: Path, ready: dict[str, Any], threads_batch: int) -> list[str]:
    """llama-rss with the engine's settings (`ready["engine"]`: its ModelInfo.extra), its
    prompt depth and its reply length."""
    engine = ready["engine"]
    return [str(binary), "-m", ready["model"], "-c", str(ready["n_ctx"]), "-b", str(ENGINE_N_BATCH),
            "-ub", engine["n_ubatch"], "-fa", engine["flash_attn"], "-ctk", engine["key_cache_type"],
            "-t", str(ready["threads"]), "-tb", str(threads_batch),
            "-repack", "1" if engine["use_extra_bufts"] == "on" else "0",
            "-d", str(ready["prompt_tokens"]), "-n", str(max(1, ready["completion_tokens"]))]


def process_memory(pid: int, model: Path) -> dict[str, Any]:
    """RSS, USS and PSS of `pid`, its resident bytes by kind of mapping, and the model file's share."""
    import psutil

    full = psutil.Process(pid).memory_full_info()
    parts = resident_by_kind(pid, model)
    model_part = parts.get("model file", {"rss": 0, "pss": 0})
    return {"rss": full.rss, "uss": full.uss, "pss": full.pss, "parts": parts,
            "model_file_rss": model_part["rss"], "model_file_pss": model_part["pss"],
            "rss_without_model": full.rss - model_part["rss"]}


def run_reference(command: list[str], model: Path) -> dict[str, Any]:
    """Start llama-rss, wait until it has generated, read its memory, let it exit."""
    reference = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = reference.stdout.readline() if reference.stdout else ""
        if not line:
            raise RuntimeError(f"llama-rss failed: {' '.join(command)}")
        return {**json.loads(line), **process_memory(reference.pid, model)}
    finally:
        if reference.stdin:
            reference.stdin.write("\n")
            reference.stdin.flush()
        reference.wait(timeout=60)


def measure(messages: int, threads: int | None, binary: Path) -> dict[str, Any]:
    import psutil

    child = subprocess.Popen([sys.executable, __file__, "--serve-app", "--messages", str(messages),
                              *common.threads_flag(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=common.ROOT)
    try:
        ready = json.loads(child.stdout.readline())
        model = Path(ready["model"])
        gui = process_memory(child.pid, model)
        engine = process_memory(ready["engine_pid"], model)
        # backend.decide's rule: prompts on every physical core unless threads were chosen.
        command = reference_command(binary, ready, threads or psutil.cpu_count(logical=False) or 1)
        reference = run_reference(command, model)  # while the app still holds its memory
    finally:
        if child.stdin:
            child.stdin.write("\n")
            child.stdin.flush()
        child.wait(timeout=120)
    return {
        **ready, "model": model.name,  # results name the file, never this machine's path
        "reference_command": ["llama-rss", *command[1:2], model.name, *command[3:]],
        "gui": gui, "engine": engine, "llama_cpp": reference,
        "model_file_size": model.stat().st_size,
        "gui_rss": gui["rss"],
        "engine_over_llama_rss": engine["rss"] - reference["rss"],
        "engine_over_llama_rss_without_model": engine["rss_without_model"] - reference["rss_without_model"],
        "total_without_model": gui["rss"] + engine["rss_without_model"],
        "total_pss_without_model": gui["pss"] + engine["pss"] - engine["model_file_pss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    common.add_threads_argument(parser)
    parser.add_argument("--reference", type=Path, help="llama-rss binary (default: build_llama_rss.sh)")
    parser.add_argument("--serve-app", action="store_true", help=argparse.SUPPRESS)
    common.add_common_arguments(parser, "memory")
    args = parser.parse_args()
    if args.serve_app:
        serve_app(args.messages, args.threads)
        return

    binary = args.reference or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                                   check=True).stdout.strip())
    facts = common.machine()
    common.print_machine(facts)
    figures = measure(args.messages, args.threads, binary)

    def mb(value: int) -> str:
        return f"{value / common.MIB:.1f} MB"

    print(f"model {figures['model']}, n_ctx {figures['n_ctx']}, {figures['threads']} threads; "
          f"{figures['shown']} messages shown; the last reply's prompt {figures['prompt_tokens']} tokens, "
          f"its reply {figures['completion_tokens']}")
    print(f"llama.cpp reference: {' '.join(figures['reference_command'])}")
    for name, label in (("gui", "GUI process"), ("engine", "engine process"), ("llama_cpp", "llama.cpp (llama-rss)")):
        part = figures[name]
        kinds = ", ".join(f"{kind} {value['rss'] / common.MIB:.1f}"
                          for kind, value in sorted(part["parts"].items(), key=lambda item: -item[1]["rss"]))
        print(f"{label}: RSS {mb(part['rss'])}, USS {mb(part['uss'])}, PSS {mb(part['pss'])}; "
              f"without the model file {mb(part['rss_without_model'])}\n  by mapping (MB): {kinds}")
    gui_mb = figures["gui_rss"] / common.MIB
    over_mb = figures["engine_over_llama_rss"] / common.MIB
    print(f"window's process RSS: {gui_mb:.1f} MB (goal <= {GUI_GOAL_MB} MB: "
          f"{'met' if gui_mb <= GUI_GOAL_MB else 'not met'})")
    print(f"engine RSS - llama.cpp RSS: {over_mb:.1f} MB (without the model file on both sides "
          f"{mb(figures['engine_over_llama_rss_without_model'])}; goal <= {ENGINE_OVER_LLAMA_GOAL_MB} MB: "
          f"{'met' if over_mb <= ENGINE_OVER_LLAMA_GOAL_MB else 'not met'})")
    print(f"app total (GUI RSS + engine RSS - model file): {mb(figures['total_without_model'])}; "
          f"by PSS: {mb(figures['total_pss_without_model'])}")
    figures.update(machine=facts, gui_goal_mb=GUI_GOAL_MB, engine_over_llama_goal_mb=ENGINE_OVER_LLAMA_GOAL_MB,
                   load_average_after=common.load_average())
    common.save_results(args.results, args.key, figures)


if __name__ == "__main__":
    main()
