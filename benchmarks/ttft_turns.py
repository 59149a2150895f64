"""Time to first token at turn 1 vs turn 20 of one conversation through EngineClient (goal: <= 1.2x).

The whole history is sent every turn, as the app does; the engine keeps the KV cache of the
shared prefix, so a later turn should only evaluate its new message. llama.cpp's prompt-eval
counter (GenerationStats.prompt_evaluated) shows how many tokens each turn really evaluated.
Each repetition runs in a fresh engine process, warmed with an unrelated completion first so
turn 1 does not carry first-use costs. Two times per turn: the engine's own (prefill + first
sample) and as the caller sees it (stream_chat called -> first piece, including the chat
template, tokenizing and the pipe); the goal is judged on the latter.
Then, unless --no-kv-restore, runs benchmarks/kv_restore.py (reopening a ~4k-token chat after a
restart: cold prefill vs restored KV state) and reports its figures.

    .venv/bin/python benchmarks/ttft_turns.py [--turns 20] [--repetitions 3] [--threads T]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

KV_RESTORE = common.ROOT / "benchmarks" / "kv_restore.py"
QUESTIONS = [
    "What is a good way to start learning to play the guitar as an adult with little free time?",
    "How often should I practise each week, and for how long each time, to make steady progress?",
    "Which songs are easy enough for a beginner but still fun to play for friends at a party?",
    "My fingertips hurt after practising. Is that normal, and how long does it usually last?",
    "Should I learn to read music notation or is it fine to use chord charts and tabs instead?",
]


def conversation(client: Any, turns: int, session: str, reply_tokens: int) -> list[dict[str, float]]:
    """One conversation of `turns` turns; per turn: times, and llama.cpp's prompt counts."""
    from slmchat.core.generation import ChatMessage, GenerationSettings, Role

    settings = GenerationSettings(max_tokens=reply_tokens, temperature=0.0)
    history: list[Any] = []
    figures = []
    for turn in range(turns):
        history.append(ChatMessage(Role.USER, f"{QUESTIONS[turn % len(QUESTIONS)]} (question {turn + 1})"))
        started = time.perf_counter()
        generation = client.stream_chat(history, settings, session=session)
        next(generation)
        seen = time.perf_counter() - started
        generation.read()
        stats = generation.stats
        history.append(ChatMessage(Role.ASSISTANT, generation.text))
        figures.append({"turn": turn + 1, "seen_s": seen, "engine_s": stats.time_to_first_token_s,
                        "prompt_tokens": stats.prompt_tokens, "evaluated": stats.prompt_evaluated,
                        "reused": stats.prompt_reused})
    return figures


def kv_restore_figures(threads: int | None, runs: int) -> dict[str, Any]:
    """Run kv_restore.py (the engine engineer's benchmark) and pick its summary from its output."""
    result = subprocess.run([sys.executable, str(KV_RESTORE), *common.threads_flag(threads), "--runs", str(runs)],
                            check=False, capture_output=True, text=True, cwd=common.ROOT, timeout=1800)
    print("kv_restore.py:\n  " + "\n  ".join(result.stdout.strip().splitlines()))
    if result.returncode != 0:
        print(f"  kv_restore.py failed ({result.returncode}): {result.stderr.strip()[-500:]}")
        return {"error": result.stderr.strip()[-500:]}
    found = re.search(r"median engine TTFT: cold ([\d.]+) s, restored ([\d.]+) s, ratio ([\d.]+)", result.stdout)
    seen = re.search(r"as the app sees it: cold ([\d.]+) s, restored ([\d.]+) s, ratio ([\d.]+)", result.stdout)
    size = re.search(r"conversation: (\d+) tokens", result.stdout)
    figures: dict[str, Any] = {"output": result.stdout, "goal": 0.3}
    if found:
        figures.update(cold_s=float(found[1]), restored_s=float(found[2]), ratio=float(found[3]))
    if seen:
        figures.update(cold_seen_s=float(seen[1]), restored_seen_s=float(seen[2]), seen_ratio=float(seen[3]))
    if size:
        figures["conversation_tokens"] = int(size[1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--reply-tokens", type=int, default=48)
    common.add_threads_argument(parser)
    parser.add_argument("--context", type=int, default=4096, help="n_ctx (the app's default)")
    parser.add_argument("--no-kv-restore", action="store_true", help="skip kv_restore.py")
    parser.add_argument("--kv-runs", type=int, default=3)
    common.add_common_arguments(parser, "ttft_turns")
    args = parser.parse_args()

    from slmchat.core.generation import EngineConfig, GenerationSettings
    from slmchat.core.process.engine_client import EngineClient
    from slmchat.paths import Paths, starter_model

    facts = common.machine()
    common.print_machine(facts)
    model = starter_model()
    config = EngineConfig(model, n_ctx=args.context, n_threads=args.threads)
    repetitions = []
    for repetition in range(args.repetitions):
        with tempfile.TemporaryDirectory(prefix="ttft-") as home, \
                EngineClient(config, paths=Paths.at(home)) as client:
            client.complete("The weather today is", GenerationSettings(max_tokens=8, temperature=0.0)).read()
            repetitions.append(conversation(client, args.turns, f"ttft-{repetition}", args.reply_tokens))
        print(f"  repetition {repetition + 1}: turn 1 {repetitions[-1][0]['seen_s'] * 1000:.1f} ms, "
              f"turn {args.turns} {repetitions[-1][-1]['seen_s'] * 1000:.1f} ms; "
              f"load {common.fmt_load(common.load_average())}")
    info_line = (f"model {Path(model).name}, {common.describe_threads(args.threads)}, n_ctx {args.context}, replies of up to "
                 f"{args.reply_tokens} tokens (greedy), {args.repetitions} repetitions, medians")
    print(info_line)
    print(f"{'turn':>4} {'prompt':>7} {'evaluated':>9} {'reused':>7} {'engine ms':>10} {'seen ms':>8}")
    per_turn = []
    for index in range(args.turns):
        rows = [figures[index] for figures in repetitions]
        turn = {key: common.median(row[key] for row in rows) for key in rows[0]}
        per_turn.append(turn)
        print(f"{turn['turn']:4.0f} {turn['prompt_tokens']:7.0f} {turn['evaluated']:9.0f} {turn['reused']:7.0f} "
              f"{turn['engine_s'] * 1000:10.1f} {turn['seen_s'] * 1000:8.1f}")
    first, last = per_turn[0], per_turn[-1]
    ratio = last["seen_s"] / first["seen_s"]
    engine_ratio = last["engine_s"] / first["engine_s"]
    print(f"turn {args.turns} / turn 1 time to first token: {ratio:.2f}x as the caller sees it "
          f"(engine's own {engine_ratio:.2f}x); goal <= 1.2x")
    figures: dict[str, Any] = {
        "model": Path(model).name, "threads": args.threads, "n_ctx": args.context, "turns": per_turn,
        "ratio": ratio, "engine_ratio": engine_ratio, "goal": 1.2, "machine": facts,
    }
    if not args.no_kv_restore:
        figures["kv_restore"] = kv_restore_figures(args.threads, args.kv_runs)
    figures["load_average_after"] = common.load_average()
    common.save_results(args.results, args.key, figures)


if __name__ == "__main__":
    main()
