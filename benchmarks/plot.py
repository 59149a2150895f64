"""Draw docs/benchmarks.png from run_all.sh's results JSON (one panel per figure, goals marked)
and print the figures-vs-goals table of docs/BENCHMARKS.md (goals.py's rows).

matplotlib is a benchmark-only dependency (`.venv/bin/pip install matplotlib`); the app never
imports it.

    .venv/bin/python benchmarks/plot.py benchmarks/results.json docs/benchmarks.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from goals import table

MIB = 1024**2
GOAL = {"color": "#c0392b", "linestyle": "--", "linewidth": 1}
APP, REFERENCE = "#2e86c1", "#7f8c8d"


def decode(ax: Any, figures: dict[str, Any]) -> None:
    runs = figures["runs"]
    medians = figures["llama_bench_medians"]  # JSON keys: thread counts as text
    labels = ["app (at the GUI)"] + [f"llama-bench tg\n{count} threads" for count in medians]
    ax.bar(range(len(labels)), [figures["app_median"], *medians.values()],
           color=[APP] + [REFERENCE] * len(medians), alpha=0.8)
    ax.scatter([0] * len(runs), [run["app_tokens_per_s"] for run in runs], color="black", s=10, zorder=3)
    for index, count in enumerate(medians, start=1):
        ax.scatter([index] * len(runs), [run["llama_bench_by_threads"][count] for run in runs], color="black", s=10,
                   zorder=3)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("tokens/s")
    ax.set_title(f"Decode: ÷ best llama-bench {figures['ratio']:.3f} (goal ≥ {figures['goal']})\n"
                 f"{figures['tokens']} tokens, app on {figures['threads']} threads, {len(runs)} pairs")


def ttft(ax: Any, figures: dict[str, Any]) -> None:
    turns = figures["turns"]
    numbers = [turn["turn"] for turn in turns]
    ax.plot(numbers, [turn["seen_s"] * 1000 for turn in turns], marker="o", color=APP, label="as the caller sees it")
    ax.plot(numbers, [turn["engine_s"] * 1000 for turn in turns], marker=".", color=REFERENCE, label="engine's own")
    ax.axhline(turns[0]["seen_s"] * 1000 * figures["goal"], label=f"goal: {figures['goal']}× turn 1", **GOAL)
    ax.set_xlabel("turn")
    ax.set_ylabel("time to first token (ms)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.set_title(f"TTFT by turn: turn {numbers[-1]} = {figures['ratio']:.2f}× turn 1 (goal ≤ {figures['goal']}×)")


def kv_restore(ax: Any, figures: dict[str, Any]) -> None:
    ax.bar([0, 1], [figures["cold_s"], figures["restored_s"]], color=[REFERENCE, APP], alpha=0.8)
    ax.axhline(figures["cold_s"] * figures["goal"], label=f"goal: {figures['goal']}× cold", **GOAL)
    ax.set_xticks([0, 1], ["cold prefill", "KV state restored"])
    ax.set_ylabel("time to first token (s)")
    ax.legend(fontsize=7)
    ax.set_title(f"Reopening a {figures.get('conversation_tokens', '~4k')}-token chat after a restart:\n"
                 f"ratio {figures['ratio']:.3f} (goal ≤ {figures['goal']})")


def smoothness(ax: Any, figures: dict[str, Any]) -> None:
    replies = figures["replies"]
    numbers = list(range(1, len(replies) + 1))
    ax.bar([n - 0.2 for n in numbers], [r["max_ms"] for r in replies], width=0.4, color=APP, label="longest stall")
    ax.bar([n + 0.2 for n in numbers], [r["p99_ms"] for r in replies], width=0.4, color=REFERENCE, label="p99 gap")
    ax.axhline(figures["goal_ms"], label=f"goal < {figures['goal_ms']} ms", **GOAL)
    ax.set_xticks(numbers, [f"reply {n}" for n in numbers])
    ax.set_ylabel("GUI-thread gap (ms)")
    ax.legend(fontsize=7)
    ax.set_title(f"Streaming into a {figures['messages']}-message chat\n"
                 f"(opening it: {figures['opening']['max_ms']:.0f} ms stall, not streaming)")


def startup(ax: Any, figures: dict[str, Any]) -> None:
    labels = [label for label in ("first_run", "returning_user") if label in figures]
    values = [figures[label]["usable_s"] for label in labels]
    ax.bar(range(len(labels)), values, color=APP, alpha=0.8)
    ax.bar([len(labels)], [figures["model_load_s"]], color=REFERENCE, alpha=0.8)
    ax.axhline(figures["goal_s"], label=f"goal < {figures['goal_s']} s (window)", **GOAL)
    ax.set_xticks(range(len(labels) + 1), [label.replace("_", " ") for label in labels] + ["model load"])
    ax.set_ylabel("seconds")
    ax.legend(fontsize=7)
    ax.set_title("Process start → usable window (median)")


def memory(ax: Any, figures: dict[str, Any]) -> None:
    """The window's process, the model process and llama.cpp's own process (llama-rss) at the same
    settings, each split into the model file's resident share and the rest."""
    parts = [("window", figures["gui"]), ("model process", figures["engine"]), ("llama.cpp alone", figures["llama_cpp"])]
    rest = [part["rss_without_model"] / MIB for _, part in parts]
    model = [part["model_file_rss"] / MIB for _, part in parts]
    ax.bar(range(3), rest, color=[APP, APP, REFERENCE], label="RSS without the model file")
    ax.bar(range(3), model, bottom=rest, color="white", edgecolor=REFERENCE, hatch="//", label="model file")
    ax.axhline(figures["gui_goal_mb"], label=f"window goal ≤ {figures['gui_goal_mb']} MB", **GOAL)
    ax.set_xticks(range(3), [name for name, _ in parts])
    ax.set_ylabel("MB")
    ax.legend(fontsize=7)
    ax.set_title(f"Memory: model process − llama.cpp alone\n= {figures['engine_over_llama_rss'] / MIB:.0f} MB "
                 f"(goal ≤ {figures['engine_over_llama_goal_mb']} MB)")


PANELS = [("decode_ratio", decode), ("ttft_turns", ttft), (("ttft_turns", "kv_restore"), kv_restore),
          ("gui_smoothness", smoothness), ("startup", startup), ("memory", memory)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    results = json.loads(args.results.read_text(encoding="utf-8"))
    figure, axes = plt.subplots(2, 3, figsize=(15, 9))
    for ax, (key, draw) in zip(axes.flat, PANELS):
        path = key if isinstance(key, tuple) else (key,)
        data: Any = results
        for part in path:
            data = data.get(part) if isinstance(data, dict) else None
        if not data or "error" in data:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{' / '.join(path)}: not measured", ha="center", va="center")
            continue
        draw(ax, data)
    machine = next((value["machine"] for value in results.values() if isinstance(value, dict) and "machine" in value), {})
    figure.suptitle(f"slmchat benchmarks — {machine.get('cpu', '?')}, {machine.get('physical_cores', '?')} cores, "
                    f"load average at start {machine.get('load_average', '?')}", fontsize=11)
    figure.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.output, dpi=90)
    print(f"wrote {args.output}\n")
    print(table(results))


if __name__ == "__main__":
    main()
