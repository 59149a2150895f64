"""The app's default decode speed against llama-bench at its best thread count, and with another
program keeping one core busy (goals: >= 0.95 of llama-bench's best; >= 0.8 of its own unloaded
speed under that load).

A (the app): the real MainWindow over a temporary data folder, offscreen, with the threads the app
chooses itself (decode_ratio.py says how a reply is timed: first to last piece the GUI shows).
B (llama-bench, built from the vendored llama.cpp): `-p 0 -n N -d D -t 1,2,... -r 1`, every thread
count up to the physical cores, with the engine's own flags; the best median is the reference.
C (the app again) while a core hog (`python -c "while True: pass"`) runs, started 0.3 s before
the message is sent and stopped after the reply.
Each round runs B (every T), A and C in turn, so all meet the same machine load; medians, the two
ratios and the load average are printed.

    .venv/bin/python benchmarks/decode_under_load.py [--tokens 256] [--rounds 5] [--bench PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import common
from decode_ratio import BUILD_SCRIPT, PROMPT, engine_flags, llama_bench

UNLOADED_GOAL = 0.95  # of llama-bench at its best thread count
LOADED_GOAL = 0.8  # of the app's own unloaded speed, one core kept busy
HOG = "while True: pass"


def reply_with_hog(app: common.AppUnderTest) -> common.ReplyTiming:
    """One reply while another process keeps a core busy."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        time.sleep(0.3)
        return app.reply(PROMPT)
    finally:
        hog.kill()
        hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=256, help="reply length asked of the app (max_tokens)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bench", type=Path, help="llama-bench binary (default: build_llama_bench.sh)")
    common.add_common_arguments(parser, "decode_under_load")
    args = parser.parse_args()

    from slmchat.core.generation import GenerationSettings

    bench = args.bench or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                              check=True).stdout.strip())
    facts = common.machine()
    common.print_machine(facts)
    thread_counts = list(range(1, max(2, facts["physical_cores"]) + 1))
    settings = GenerationSettings(max_tokens=args.tokens, temperature=0.0)
    with common.AppUnderTest(threads=None, context_size=2048, generation=settings) as app:
        info = app.start_model()
        warm = app.reply(PROMPT)  # warms caches; not counted
        tokens, depth = warm.completion_tokens, warm.prompt_tokens
        flags = engine_flags(info.extra)
        print(f"model {info.path.name}, the app's own threads ({info.n_threads} at load), n_ctx {info.n_ctx}; "
              f"prompt {depth} tokens, reply {tokens} tokens, greedy; llama-bench -p 0 -n {tokens} -d {depth} "
              f"-t {'/'.join(map(str, thread_counts))} {' '.join(flags)}")
        bench_speeds: dict[int, list[float]] = {t: [] for t in thread_counts}
        unloaded, loaded, runs = [], [], []
        for round_ in range(args.rounds):
            speeds = llama_bench(bench, info.path, tokens=tokens, depth=depth, threads=thread_counts,
                                 engine=info.extra)
            row = {}
            for threads, speed in speeds.items():
                bench_speeds[threads].append(speed)
                row[f"llama_bench_t{threads}"] = speed
            alone, hogged = app.reply(PROMPT), reply_with_hog(app)
            unloaded.append(alone.gui_tokens_per_s)
            loaded.append(hogged.gui_tokens_per_s)
            row.update(app_tokens_per_s=alone.gui_tokens_per_s, app_with_hog_tokens_per_s=hogged.gui_tokens_per_s,
                       load_average=common.load_average())
            runs.append(row)
            print(f"  round {round_ + 1}: llama-bench "
                  + ", ".join(f"t{t} {row[f'llama_bench_t{t}']:6.1f}" for t in thread_counts)
                  + f"; app {alone.gui_tokens_per_s:6.1f}, with a core hog {hogged.gui_tokens_per_s:6.1f} tok/s; "
                  f"load {common.fmt_load(common.load_average())}")
    medians = {t: common.median(v) for t, v in bench_speeds.items()}
    best = max(medians, key=medians.get)
    app_median, loaded_median = common.median(unloaded), common.median(loaded)
    unloaded_ratio, loaded_ratio = app_median / medians[best], loaded_median / app_median
    print("median: llama-bench " + ", ".join(f"t{t} {s:.1f}" for t, s in medians.items())
          + f" (best: {best} threads); app {app_median:.1f}, with a core hog {loaded_median:.1f} tok/s")
    print(f"app / llama-bench's best: {unloaded_ratio:.3f} (goal >= {UNLOADED_GOAL}: "
          f"{'met' if unloaded_ratio >= UNLOADED_GOAL else 'NOT met'})")
    print(f"app with a core hog / app alone: {loaded_ratio:.3f} (goal >= {LOADED_GOAL}: "
          f"{'met' if loaded_ratio >= LOADED_GOAL else 'NOT met'}); load average {common.fmt_load(common.load_average())}")
    common.save_results(args.results, args.key, {
        "model": info.path.name, "threads_at_load": info.n_threads, "prompt_tokens": depth, "tokens": tokens,
        "llama_bench_flags": flags, "llama_bench_medians": medians, "llama_bench_best_threads": best,
        "app_median": app_median, "app_with_hog_median": loaded_median,
        "unloaded_ratio": unloaded_ratio, "unloaded_goal": UNLOADED_GOAL,
        "loaded_ratio": loaded_ratio, "loaded_goal": LOADED_GOAL,
        "runs": runs, "machine": facts, "load_average_after": common.load_average(),
    })


if __name__ == "__main__":
    main()
