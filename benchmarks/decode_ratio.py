"""Decode speed through the whole app divided by llama.cpp's own llama-bench (goal: >= 0.97).

A (the app): the real MainWindow from app.build_window over a temporary data folder, offscreen;
ChatController.send -> GenerationWorker on its QThread -> EngineClient (engine process) ->
queued signals -> ChatModel on the GUI thread, which the chat view paints. Tokens are llama.cpp's
count (stored with the reply); time runs from the first to the last piece the GUI thread shows,
so the speed is (tokens - 1) / that time: the decodes between the first and the last token.
B (llama-bench, built from the vendored llama.cpp): `-p 0 -n N -d D -t T -r 1`, with N the
tokens the app actually produced, D the app's prompt length (the same KV depth) and T its threads;
`--repack 0` where the app turned off llama.cpp's extra buffer types (AMX CPUs).
Runs alternate A B A B ... so both meet the same machine load; medians and their ratio are printed.

    .venv/bin/python benchmarks/decode_ratio.py [--tokens 256] [--pairs 5] [--threads T] [--bench PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import common

# Greedy decoding keeps counting to the length limit: long, repeatable replies of exactly N tokens.
PROMPT = "Write the numbers from 1 to 300, one per line."
BUILD_SCRIPT = common.ROOT / "benchmarks" / "build_llama_bench.sh"


def llama_bench(binary: Path, model: Path, *, tokens: int, depth: int, threads: int, repack: bool) -> float:
    """llama-bench's tg tokens/s for one repetition (its warm-up run is not counted)."""
    command = [str(binary), "-m", str(model), "-p", "0", "-n", str(tokens), "-d", str(depth),
               "-t", str(threads), "-r", "1", "-o", "json"]
    if not repack:
        command += ["--repack", "0"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return float(json.loads(result.stdout)[0]["avg_ts"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="reply length asked of the app (max_tokens)")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=common.default_threads())
    parser.add_argument("--bench", type=Path, help="llama-bench binary (default: build_llama_bench.sh)")
    common.add_common_arguments(parser, "decode_ratio")
    args = parser.parse_args()

    from slmchat.core.generation import GenerationSettings

    bench = args.bench or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                              check=True).stdout.strip())
    facts = common.machine()
    common.print_machine(facts)
    settings = GenerationSettings(max_tokens=args.tokens, temperature=0.0)
    with common.AppUnderTest(threads=args.threads, context_size=2048, generation=settings) as app:
        info = app.start_model()
        repack = info.extra.get("use_extra_bufts", "on") == "on"
        warm = app.reply(PROMPT)  # the first reply also warms caches; not counted
        tokens, depth = warm.completion_tokens, warm.prompt_tokens
        print(f"model {info.path.name}, {info.n_threads} threads, n_ctx {info.n_ctx}, extra buffer types "
              f"{'on' if repack else 'off'}; prompt {depth} tokens, reply {tokens} tokens "
              f"({warm.finish_reason}), greedy sampling; llama-bench -p 0 -n {tokens} -d {depth} "
              f"-t {info.n_threads}{'' if repack else ' --repack 0'}")
        app_speeds, bench_speeds, runs = [], [], []
        for pair in range(args.pairs):
            timing = app.reply(PROMPT)
            if timing.completion_tokens != tokens:
                print(f"  note: this reply had {timing.completion_tokens} tokens, not {tokens}")
            reference = llama_bench(bench, info.path, tokens=tokens, depth=depth, threads=info.n_threads,
                                    repack=repack)
            app_speeds.append(timing.gui_tokens_per_s)
            bench_speeds.append(reference)
            runs.append({"app_tokens_per_s": timing.gui_tokens_per_s, "engine_tokens_per_s": timing.engine_tokens_per_s,
                         "llama_bench_tokens_per_s": reference, "tokens": timing.completion_tokens,
                         "pieces_shown": len(timing.arrivals), "load_average": common.load_average()})
            print(f"  pair {pair + 1}: app {timing.gui_tokens_per_s:6.1f} tok/s at the GUI "
                  f"(engine's own {timing.engine_tokens_per_s:6.1f}, {len(timing.arrivals)} updates shown), "
                  f"llama-bench {reference:6.1f} tok/s; load {common.fmt_load(common.load_average())}")
    app_median, bench_median = common.median(app_speeds), common.median(bench_speeds)
    ratio = app_median / bench_median
    print(f"median: app {app_median:.1f} tok/s, llama-bench {bench_median:.1f} tok/s, "
          f"ratio {ratio:.3f} (goal >= 0.97)")
    common.save_results(args.results, args.key, {
        "model": info.path.name, "threads": info.n_threads, "prompt_tokens": depth, "tokens": tokens,
        "repack": repack, "app_median": app_median, "llama_bench_median": bench_median, "ratio": ratio,
        "goal": 0.97, "runs": runs, "machine": facts, "load_average_after": common.load_average(),
    })


if __name__ == "__main__":
    main()
