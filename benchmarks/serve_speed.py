"""The cost of `slmchat-cli serve`: decode speed and time to first token through the HTTP API,
against the engine's own client and against llama.cpp's own llama-bench.

The same greedy chat request is answered by the model's engine process, in turn: through the
server, read with the official `openai` client as a streamed chat completion, and through
`EngineClient` directly (what the window and the CLI use); llama-bench (built by
build_llama_bench.sh from the llama.cpp that llama-cpp-python vendors) decodes as many tokens
at the same KV depth with the engine's own flags, at every thread count from 1 to the CPU count.
Runs alternate, so all three meet the same machine load. Printed, each with its goal:
- decode tokens/s through the server ÷ llama-bench at the same threads, and ÷ llama-bench at its
  best thread count (goal ≥ 0.95);
- decode through the server ÷ through EngineClient (goal ≥ 0.95);
- the time to the first piece the server adds over EngineClient (goal < 10 ms).
Decode speed is (tokens - 1) ÷ (last piece - first piece) as each consumer receives them.

    .venv/bin/python benchmarks/serve_speed.py [--model PATH] [--threads N] [--tokens N] [--runs N]
        [--bench PATH] [--results R.json [--key serve_speed]]
(no --threads: the server as a user starts it, the engine choosing its threads)
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import common
from decode_ratio import BUILD_SCRIPT, PROMPT, engine_flags, llama_bench
from openai import OpenAI

from slmchat.core.generation import ChatMessage, EngineConfig, GenerationSettings, Role
from slmchat.core.process.engine_client import EngineClient
from slmchat.paths import Paths, starter_model

ROOT = Path(__file__).resolve().parents[1]
GOAL_RATIO = 0.95
GOAL_ADDED_MS = 10.0


@dataclass(frozen=True)
class Run:
    tokens_per_s: float  # decode, as the consumer receives the pieces
    first_piece_s: float  # from sending the request to the first piece
    tokens: int
    prompt_tokens: int


def start_server(model: Path, threads: int | None, home: Path) -> tuple[subprocess.Popen, str]:
    """`slmchat-cli serve` as a user starts it; `threads` None leaves the count to the engine."""
    chosen = [] if threads is None else ["--threads", str(threads)]
    server = subprocess.Popen(
        [sys.executable, "-m", "slmchat.cli", "serve", "--model", str(model), *chosen, "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SLMCHAT_HOME": str(home), "PYTHONPATH": str(ROOT)},
    )
    for line in server.stdout:
        found = re.search(r"(http://\S+/v1)", line)
        if found:
            return server, found.group(1)
    raise RuntimeError(f"the server did not start: {server.stderr.read()}")


def through_server(client: OpenAI, model: str, tokens: int) -> Run:
    sent = time.perf_counter()
    arrivals: list[float] = []
    used = prompt = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        if chunk.usage is not None:
            used, prompt = chunk.usage.completion_tokens, chunk.usage.prompt_tokens
    return Run((used - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent, used, prompt)


def direct(engine: EngineClient, tokens: int) -> Run:
    sent = time.perf_counter()
    generation = engine.stream_chat([ChatMessage(Role.USER, PROMPT)], GenerationSettings(max_tokens=tokens,
                                                                                           temperature=0))
    arrivals = [time.perf_counter() for _piece in generation]
    stats = generation.stats
    return Run((stats.completion_tokens - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent,
               stats.completion_tokens, stats.prompt_tokens)


def met(ok: bool) -> str:
    return "met" if ok else "not met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=starter_model())
    common.add_threads_argument(parser)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--bench", type=Path, help="llama-bench binary (default: build_llama_bench.sh)")
    common.add_common_arguments(parser, "serve_speed")
    args = parser.parse_args()
    bench = args.bench or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                              check=True).stdout.strip())
    thread_counts = list(range(1, (os.cpu_count() or 1) + 1))
    home = Path(tempfile.mkdtemp(prefix="slmchat-serve-bench-"))
    server, url = start_server(args.model, args.threads, home)
    served: list[Run] = []
    own: list[Run] = []
    bench_speeds: dict[int, list[float]] = {count: [] for count in thread_counts}
    try:
        client = OpenAI(base_url=url, api_key="not-needed-on-loopback")
        model = client.models.list().data[0].id
        engine = EngineClient(EngineConfig(args.model, n_ctx=1024, n_threads=args.threads), paths=Paths.at(home))
        warm = through_server(client, model, args.tokens)  # warms both; its length sets llama-bench's
        direct(engine, args.tokens)
        if warm.tokens < args.tokens // 2:
            raise SystemExit(f"the model wrote only {warm.tokens} tokens: too few to measure decoding")
        flags = engine_flags(engine.info.extra)
        threads = engine.info.n_threads  # a reply's first count (with no --threads, it follows the load)
        if threads not in thread_counts:
            thread_counts.append(threads)
            bench_speeds[threads] = []
        for run in range(args.runs):  # alternate, and swap who goes first, so all meet the same load
            steps = [lambda: served.append(through_server(client, model, args.tokens)),
                     lambda: own.append(direct(engine, args.tokens))]
            for measure in (steps if run % 2 == 0 else steps[::-1]):
                measure()
            reference = llama_bench(bench, args.model, tokens=warm.tokens, depth=warm.prompt_tokens,
                                    threads=thread_counts, engine=engine.info.extra)
            for count, speed in reference.items():
                bench_speeds[count].append(speed)
        engine.close()
    finally:
        server.terminate()
        server.wait(30)

    speed_served = statistics.median(r.tokens_per_s for r in served)
    speed_own = statistics.median(r.tokens_per_s for r in own)
    first_served = statistics.median(r.first_piece_s for r in served)
    first_own = statistics.median(r.first_piece_s for r in own)
    added_ms = (first_served - first_own) * 1000
    bench_medians = {count: statistics.median(speeds) for count, speeds in bench_speeds.items()}
    best = max(bench_medians, key=bench_medians.__getitem__)
    ratio_same = speed_served / bench_medians[threads]
    ratio_best = speed_served / bench_medians[best]
    ratio_direct = speed_served / speed_own
    print(f"model {args.model.name}, {common.describe_threads(args.threads)} ({threads} to start), "
          f"{warm.tokens} tokens at depth {warm.prompt_tokens} x {args.runs} runs each, llama-bench {' '.join(flags)}, load average {os.getloadavg()[0]:.2f}")
    print("llama-bench decode: " + ", ".join(f"{count} threads {speed:.1f}" for count, speed
                                              in bench_medians.items()) + " tok/s")
    print(f"decode through the server (openai client) {speed_served:.1f} tok/s ÷ llama-bench at the same "
          f"{threads} threads {bench_medians[threads]:.1f} tok/s = {ratio_same:.3f} "
          f"(goal >= {GOAL_RATIO}: {met(ratio_same >= GOAL_RATIO)})")
    print(f"decode through the server ÷ llama-bench at its best ({best} threads, {bench_medians[best]:.1f} tok/s) "
          f"= {ratio_best:.3f} (goal >= {GOAL_RATIO}: {met(ratio_best >= GOAL_RATIO)})")
    print(f"decode: through the server {speed_served:.1f} tok/s, through EngineClient {speed_own:.1f} tok/s "
          f"-> server / direct {ratio_direct:.3f} (goal >= {GOAL_RATIO}: {met(ratio_direct >= GOAL_RATIO)})")
    print(f"first piece: through the server {first_served * 1000:.0f} ms, through EngineClient "
          f"{first_own * 1000:.0f} ms -> the server adds {added_ms:.1f} ms (goal < {GOAL_ADDED_MS:g} ms: "
          f"{met(added_ms < GOAL_ADDED_MS)})")
    common.save_results(args.results, args.key, {
        "model": args.model.name, "threads": threads, "threads_fixed": args.threads is not None,
        "tokens": warm.tokens, "prompt_tokens": warm.prompt_tokens,
        "runs": args.runs, "ratio": ratio_direct, "added_first_piece_ms": added_ms,
        "served_tokens_per_s": speed_served, "engine_client_tokens_per_s": speed_own,
        "llama_bench_flags": flags, "llama_bench_medians": bench_medians, "best_threads": best,
        "ratio_llama_bench_same_threads": ratio_same, "ratio_llama_bench_best": ratio_best, "goal_ratio": GOAL_RATIO,
        "goal_added_ms": GOAL_ADDED_MS, "machine": common.machine(), "load_average_after": common.load_average(),
    })


if __name__ == "__main__":
    main()
