"""Reopening a long conversation: time to first token after a cold prefill vs a KV state restored from disk.

The app's path end to end: each measured turn runs in a FRESH engine process (as after a
restart). A ~4k-token chat is built, the model writes its last reply under a session key, and
the process closes (saving the state). Then, alternately, the next user message is sent
- cold: in a fresh process with no saved state (the whole conversation is prefilled), and
- restored: in a fresh process with a pristine copy of the saved state,
and time to first token is printed (the engine's own, which includes the restore, and as the
caller sees it), with llama.cpp's prompt-eval count, medians and the ratio (goal ≤ 0.3).

    .venv/bin/python benchmarks/kv_restore.py [--model PATH] [--threads N] [--tokens 4000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    GenerationSettings,
    GenerationStats,
    Role,
)
from slmchat.core.process.engine_client import EngineClient
from slmchat.paths import Paths, starter_model

SESSION = "benchmark-conversation"
WORDS = ["harbour", "lighthouse", "keeper", "storm", "lantern", "rocks", "tide", "gull", "rope", "ledger", "coast", "fog", "bell", "winter", "oil", "wick", "glass", "shutter", "signal", "ship", "captain", "chart", "compass", "night", "dawn"]


def long_chat(target_tokens: int) -> list[ChatMessage]:
    """A conversation of roughly `target_tokens` SmolLM2 tokens (~1.2 tokens per word here)."""
    history = [ChatMessage(Role.SYSTEM, "You are a helpful assistant who keeps notes.")]
    words = 0
    turn = 0
    while words * 1.2 < target_tokens - 150:
        note = " ".join(WORDS[(turn * 7 + i) % len(WORDS)] for i in range(60))
        history += [ChatMessage(Role.USER, f"Note {turn}: {note}. Remember it."),
                    ChatMessage(Role.ASSISTANT, f"Noted {turn}: {note[:200]}.")]
        words += 100
        turn += 1
    return history + [ChatMessage(Role.USER, "What was note 3 about? Answer briefly.")]


def first_piece(client: EngineClient, history: list[ChatMessage], session: str) -> tuple[float, GenerationStats]:
    """Seconds from the call to the first piece, as the app sees it; and the engine's stats."""
    started = time.perf_counter()
    generation = client.stream_chat(history, GenerationSettings(max_tokens=4, temperature=0), session=session)
    next(generation)
    seen = time.perf_counter() - started
    generation.read()
    return seen, generation.stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=starter_model())
    parser.add_argument("--threads", type=int, default=None, help="default: the app's own choice")
    parser.add_argument("--tokens", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    config = EngineConfig(args.model, n_ctx=8192, n_threads=args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="kv-restore-"))
    try:
        saved = Paths.at(scratch / "saved")
        history = long_chat(args.tokens)
        with EngineClient(config, paths=saved) as writer:  # the conversation as the user left it
            reply = writer.stream_chat(history, GenerationSettings(max_tokens=48, temperature=0),
                                       session=SESSION)
            reply.read()
            started = time.perf_counter()
            writer.save_session()
            save_s = time.perf_counter() - started
        state = next(saved.kv_states.glob("*.kv"))
        history += [ChatMessage(Role.ASSISTANT, reply.text),
                    ChatMessage(Role.USER, "And note 5? One sentence.")]
        print(f"model {args.model.name}, threads {args.threads or 'as the app chooses'}, n_ctx {config.n_ctx}")
        print(f"conversation: {reply.stats.prompt_tokens} tokens before the last reply; "
              f"state file {state.stat().st_size / 1e6:.1f} MB, written in {save_s:.2f} s")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

        results: dict[str, list[tuple[float, GenerationStats]]] = {"cold": [], "restored": []}
        for run in range(args.runs):
            for kind in ("cold", "restored"):  # alternate, so both meet the same machine load
                home = Paths.at(scratch / f"{kind}-{run}")
                if kind == "restored":
                    shutil.copytree(saved.kv_states, home.kv_states)
                with EngineClient(config, paths=home) as fresh:
                    seen, stats = first_piece(fresh, history, SESSION)
                results[kind].append((seen, stats))
                print(f"  run {run} {kind:8}: first piece after {seen:.3f} s (engine TTFT "
                      f"{stats.time_to_first_token_s:.3f} s); prompt {stats.prompt_tokens} tokens, "
                      f"evaluated by llama.cpp {stats.prompt_evaluated}, restored {stats.prompt_reused}")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        cold = statistics.median(stats.time_to_first_token_s for _, stats in results["cold"])
        restored = statistics.median(stats.time_to_first_token_s for _, stats in results["restored"])
        cold_seen = statistics.median(seen for seen, _ in results["cold"])
        restored_seen = statistics.median(seen for seen, _ in results["restored"])
        print(f"median engine TTFT: cold {cold:.3f} s, restored {restored:.3f} s, "
              f"ratio {restored / cold:.3f} (goal <= 0.3)")
        print(f"median first piece as the app sees it: cold {cold_seen:.3f} s, restored "
              f"{restored_seen:.3f} s, ratio {restored_seen / cold_seen:.3f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
