"""The cost of `slmchat-cli serve`: decode speed and time to first token through the HTTP API.

The same greedy chat request is answered by the model's engine process twice in turn: once
through the server, read with the official `openai` client as a streamed chat completion, and
once through `EngineClient` directly (what the window and the CLI use). Prints decode tokens/s
as each consumer receives them (first to last piece), their ratio (server ÷ direct), and the time
to the first piece on each side, whose difference is what the HTTP layer adds. The engine's own
speed against llama-bench is `decode_ratio.py`'s figure.

    .venv/bin/python benchmarks/serve_speed.py [--model PATH] [--threads N] [--tokens N] [--runs N]
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
from pathlib import Path

from openai import OpenAI

from slmchat.core.engine.backend import detect
from slmchat.core.generation import ChatMessage, EngineConfig, GenerationSettings, Role
from slmchat.core.process.engine_client import EngineClient
from slmchat.paths import Paths, starter_model

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Count from 1 to 200, one number per line, and say nothing else."


def start_server(model: Path, threads: int, home: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, "-m", "slmchat.cli", "serve", "--model", str(model), "--threads", str(threads),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "SLMCHAT_HOME": str(home), "PYTHONPATH": str(ROOT)},
    )
    for line in server.stdout:
        found = re.search(r"(http://\S+/v1)", line)
        if found:
            return server, found.group(1)
    raise RuntimeError(f"the server did not start: {server.stderr.read()}")


def through_server(client: OpenAI, model: str, tokens: int) -> tuple[float, float]:
    """(decode tokens/s, seconds to the first piece) through the API."""
    sent = time.perf_counter()
    arrivals: list[float] = []
    used = 0
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=tokens, temperature=0,
        stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.perf_counter())
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
    return (used - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent


def direct(engine: EngineClient, tokens: int) -> tuple[float, float]:
    """(decode tokens/s, seconds to the first piece) through EngineClient."""
    sent = time.perf_counter()
    generation = engine.stream_chat([ChatMessage(Role.USER, PROMPT)], GenerationSettings(max_tokens=tokens,
                                                                                           temperature=0))
    arrivals = [time.perf_counter() for _piece in generation]
    return (generation.stats.completion_tokens - 1) / (arrivals[-1] - arrivals[0]), arrivals[0] - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=starter_model())
    parser.add_argument("--threads", type=int, default=detect().physical_cores)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="slmchat-serve-bench-"))
    server, url = start_server(args.model, args.threads, home)
    try:
        client = OpenAI(base_url=url, api_key="not-needed-on-loopback")
        model = client.models.list().data[0].id
        engine = EngineClient(EngineConfig(args.model, n_ctx=1024, n_threads=args.threads), paths=Paths.at(home))
        through_server(client, model, args.tokens)  # warm both
        direct(engine, args.tokens)
        served, own = [], []
        for run in range(args.runs):  # alternate, and swap who goes first, so both meet the same load
            pair = [lambda: served.append(through_server(client, model, args.tokens)),
                    lambda: own.append(direct(engine, args.tokens))]
            for measure in (pair if run % 2 == 0 else pair[::-1]):
                measure()
        engine.close()
    finally:
        server.terminate()
        server.wait(30)

    speed_served = statistics.median(s for s, _ in served)
    speed_own = statistics.median(s for s, _ in own)
    first_served = statistics.median(f for _, f in served)
    first_own = statistics.median(f for _, f in own)
    print(f"model {args.model.name}, {args.threads} threads, {args.tokens} tokens x {args.runs} runs each, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"decode: through the server {speed_served:.1f} tok/s, through EngineClient {speed_own:.1f} tok/s "
          f"-> server / direct {speed_served / speed_own:.3f} (goal >= 0.95)")
    print(f"first piece: through the server {first_served * 1000:.0f} ms, through EngineClient "
          f"{first_own * 1000:.0f} ms -> the server adds {(first_served - first_own) * 1000:.1f} ms (goal < 10 ms)")


if __name__ == "__main__":
    main()
