"""Decode speed through the whole app divided by llama.cpp's own llama-bench at its best thread count
(goal: >= 0.95), and at the app's thread count.

A (the app): the real MainWindow from app.build_window over a temporary data folder, offscreen;
ChatController.send -> GenerationWorker on its QThread -> EngineClient (engine process) ->
queued signals -> ChatModel on the GUI thread, which the chat view paints. Tokens are llama.cpp's
count (stored with the reply); time runs from the first to the last piece the GUI thread shows,
so the speed is (tokens - 1) / that time: the decodes between the first and the last token.
B (llama-bench, built from the vendored llama.cpp): `-p 0 -n N -d D -t 1,2,..,C -r 1`, with N
the tokens the app actually produced, D the app's prompt length (the same KV depth), every thread
count from 1 to the machine's C logical cores, and the engine's own choices (`engine_flags`):
flash attention, key cache type, ubatch, and `--repack 0` where the app turned off llama.cpp's
extra buffer types (AMX CPUs). Two references: llama-bench at the thread count whose median is
fastest ("best"; the goal is judged against it: the app's choice of threads is part of what is
measured) and at the app's own thread count.
C (the engine without the window): the same chat streamed through an `EngineClient` of its own
(the engine process as the CLI uses it, same threads and context), timed the same way; A ÷ C is
what the window costs the decoding (its painting takes CPU from llama.cpp's threads).
Runs alternate A B C A B C ... so all meet the same machine load; medians and ratios are printed.

    .venv/bin/python benchmarks/decode_ratio.py [--tokens 256] [--pairs 5] [--threads T] [--bench PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import common

# Greedy decoding keeps counting to the length limit: long, repeatable replies of exactly N tokens.
PROMPT = "Write the numbers from 1 to 300, one per line."
BUILD_SCRIPT = common.ROOT / "benchmarks" / "build_llama_bench.sh"


GOAL = 0.95


def threads_text(count: int) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"


def llama_bench(binary: Path, model: Path, *, tokens: int, depth: int, threads: list[int],
                engine: dict[str, str]) -> dict[int, float]:
    """llama-bench's tg tokens/s by thread count, one repetition each (its warm-up run is not
    counted), run as the engine runs the model (`engine`: its ModelInfo.extra)."""
    command = [str(binary), "-m", str(model), "-p", "0", "-n", str(tokens), "-d", str(depth),
               "-t", ",".join(map(str, threads)), "-r", "1", "-o", "json", *engine_flags(engine)]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return {int(test["n_threads"]): float(test["avg_ts"]) for test in json.loads(result.stdout)}


def engine_alone(client: Any, prompt: str, settings: Any) -> tuple[int, float]:
    """The chat streamed through `client` (no window): its tokens, and its decode tokens/s as the
    caller receives them."""
    from slmchat.core.generation import ChatMessage

    generation = client.stream_chat([ChatMessage("user", prompt)], settings)
    speed = common.consumer_speed(generation)
    return generation.stats.completion_tokens, speed


def engine_flags(engine: dict[str, str]) -> list[str]:
    """llama-bench's flags for the engine's choices: extra buffer types (off on AMX CPUs),
    flash attention, the key cache's type and the ubatch."""
    flags = ["-fa", engine.get("flash_attn", "auto"),
             "-ctk", engine.get("key_cache_type", "f16"), "-ub", engine.get("n_ubatch", "512")]
    return flags if engine.get("use_extra_bufts", "on") == "on" else [*flags, "--repack", "0"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="reply length asked of the app (max_tokens)")
    parser.add_argument("--pairs", type=int, default=5)
    common.add_threads_argument(parser)
    parser.add_argument("--bench", type=Path, help="llama-bench binary (default: build_llama_bench.sh)")
    common.add_common_arguments(parser, "decode_ratio")
    args = parser.parse_args()

    from slmchat.core.generation import EngineConfig, GenerationSettings
    from slmchat.core.process.engine_client import EngineClient

    bench = args.bench or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                              check=True).stdout.strip())
    facts = common.machine()
    common.print_machine(facts)
    settings = GenerationSettings(max_tokens=args.tokens, temperature=0.0)
    with common.AppUnderTest(threads=args.threads, context_size=2048, generation=settings) as app:
        info = app.start_model()
        warm = app.reply(PROMPT)  # the first reply also warms caches; not counted
        alone = EngineClient(EngineConfig(model_path=info.path, n_threads=args.threads, n_ctx=info.n_ctx),
                             paths=app.paths)
        try:
            engine_alone(alone, PROMPT, settings)  # warms it too
            tokens, depth = warm.completion_tokens, warm.prompt_tokens
            flags = engine_flags(info.extra)
            print(f"model {info.path.name}, {info.n_threads} threads, n_ctx {info.n_ctx}; prompt {depth} tokens, "
                  f"reply {tokens} tokens ({warm.finish_reason}), greedy sampling; llama-bench -p 0 -n {tokens} "
                  f"-d {depth} -t 1..{os.cpu_count()} {' '.join(flags)}")
            thread_counts = list(range(1, (os.cpu_count() or 1) + 1))
            if info.n_threads not in thread_counts:
                thread_counts.append(info.n_threads)
            app_speeds: list[float] = []
            alone_speeds: list[float] = []
            bench_speeds: dict[int, list[float]] = {count: [] for count in thread_counts}
            runs = []
            for pair in range(args.pairs):
                timing = app.reply(PROMPT)
                if timing.completion_tokens != tokens:
                    print(f"  note: this reply had {timing.completion_tokens} tokens, not {tokens}")
                reference = llama_bench(bench, info.path, tokens=tokens, depth=depth, threads=thread_counts,
                                        engine=info.extra)
                alone_tokens, alone_speed = engine_alone(alone, PROMPT, settings)
                app_speeds.append(timing.gui_tokens_per_s)
                alone_speeds.append(alone_speed)
                for count, speed in reference.items():
                    bench_speeds[count].append(speed)
                runs.append({"app_tokens_per_s": timing.gui_tokens_per_s,
                             "engine_tokens_per_s": timing.engine_tokens_per_s,
                             "llama_bench_tokens_per_s": reference[info.n_threads],
                             "llama_bench_by_threads": reference, "tokens": timing.completion_tokens,
                             "engine_alone_tokens_per_s": alone_speed, "engine_alone_tokens": alone_tokens,
                             "pieces_shown": len(timing.arrivals), "load_average": common.load_average()})
                others = ", ".join(f"{threads_text(count)} {speed:.1f}" for count, speed in reference.items())
                print(f"  pair {pair + 1}: app {timing.gui_tokens_per_s:6.1f} tok/s at the GUI "
                      f"(engine's own {timing.engine_tokens_per_s:6.1f}, {len(timing.arrivals)} updates shown), "
                      f"llama-bench {others} tok/s, engine without the window {alone_speed:.1f} tok/s "
                      f"({alone_tokens} tokens); load {common.fmt_load(common.load_average())}")
        finally:
            alone.close()
    app_median = common.median(app_speeds)
    bench_medians = {count: common.median(speeds) for count, speeds in bench_speeds.items()}
    best_threads = max(bench_medians, key=bench_medians.__getitem__)
    ratio_best = app_median / bench_medians[best_threads]
    ratio_same = app_median / bench_medians[info.n_threads]
    alone_median = common.median(alone_speeds)
    print(f"median: app {app_median:.1f} tok/s ({threads_text(info.n_threads)}); llama-bench "
          + ", ".join(f"{threads_text(count)} {speed:.1f}" for count, speed in bench_medians.items()) + " tok/s")
    print(f"app ÷ llama-bench at its best ({threads_text(best_threads)}): {ratio_best:.3f} (goal >= {GOAL}: "
          f"{'met' if ratio_best >= GOAL else 'not met'}); app ÷ llama-bench at the app's "
          f"{threads_text(info.n_threads)}: {ratio_same:.3f}")
    print(f"engine without the window: {alone_median:.1f} tok/s; ÷ llama-bench at its best "
          f"{alone_median / bench_medians[best_threads]:.3f}; app ÷ engine without the window "
          f"{app_median / alone_median:.3f}")
    common.save_results(args.results, args.key, {
        "model": info.path.name, "threads": info.n_threads, "prompt_tokens": depth, "tokens": tokens,
        "llama_bench_flags": flags, "app_median": app_median, "llama_bench_medians": bench_medians,
        "best_threads": best_threads, "llama_bench_best_median": bench_medians[best_threads],
        "llama_bench_median": bench_medians[info.n_threads], "ratio": ratio_best, "ratio_same_threads": ratio_same,
        "engine_alone_median": alone_median, "ratio_engine_alone": alone_median / bench_medians[best_threads],
        "goal": GOAL, "runs": runs, "machine": facts, "load_average_after": common.load_average(),
    })


if __name__ == "__main__":
    main()
