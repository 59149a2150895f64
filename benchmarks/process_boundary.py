"""The cost of the process boundary: spawn + load time, and decode speed through EngineClient.

Prints start-up time in-process vs in the engine process, and decode tokens/s as the consumer
sees them (first to last piece) in both, with their ratio (goal: client ÷ in-process ≥ 0.97).
Runs alternate so both sides meet the same machine load; threads are reported with the figures.

    .venv/bin/python benchmarks/process_boundary.py [--model PATH] [--threads N] [--tokens N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import common

from slmchat.core.engine.backend import detect
from slmchat.core.engine.engine import Engine
from slmchat.core.generation import EngineConfig, GenerationSettings
from slmchat.core.process.engine_client import EngineClient
from slmchat.paths import Paths, starter_model

PROMPT = " ".join(str(i) for i in range(30))  # the model keeps counting: long, steady replies


def timed(make: Callable[[], object]) -> tuple[object, float]:
    started = time.perf_counter()
    made = make()
    return made, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=starter_model())
    parser.add_argument("--threads", type=int, default=detect().physical_cores)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    config = EngineConfig(args.model, n_ctx=1024, n_threads=args.threads)
    settings = GenerationSettings(max_tokens=args.tokens, temperature=0)

    engine, load_in_process = timed(lambda: Engine(config))
    client, load_client = timed(lambda: EngineClient(config, paths=Paths.at(tempfile.mkdtemp())))
    assert isinstance(engine, Engine) and isinstance(client, EngineClient)
    engine.complete(PROMPT, settings).read()  # warm both (first decode repacks weights)
    client.complete(PROMPT, settings).read()
    inside, across = [], []
    for _ in range(args.runs):
        inside.append(common.consumer_speed(engine.complete(PROMPT, settings)))
        across.append(common.consumer_speed(client.complete(PROMPT, settings)))
    engine.close()
    client.close()

    median_inside, median_across = statistics.median(inside), statistics.median(across)
    print(f"model {args.model.name}, {args.threads} threads, {args.tokens} tokens x {args.runs} runs, "
          f"backend {engine.info.backend}")
    print(f"load: in-process {load_in_process:.2f} s, spawn + load in engine process {load_client:.2f} s")
    print(f"decode: in-process {median_inside:.1f} tok/s, through client {median_across:.1f} tok/s "
          f"(runs: {', '.join(f'{a:.0f}/{b:.0f}' for a, b in zip(inside, across))})")
    print(f"ratio client / in-process: {median_across / median_inside:.3f} (goal >= 0.97)")


if __name__ == "__main__":
    main()
