"""Draw docs/benchmarks.png from run_all.sh's results JSON (one panel per figure, goals marked)
and print the figures-vs-goals table of docs/BENCHMARKS.md.

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

MIB = 1024**2
GOAL = {"color": "#c0392b", "linestyle": "--", "linewidth": 1}
APP, REFERENCE = "#2e86c1", "#7f8c8d"


def decode(ax: Any, figures: dict[str, Any]) -> None:
    runs = figures["runs"]
    ax.bar([0, 1], [figures["app_median"], figures["llama_bench_median"]], color=[APP, REFERENCE], alpha=0.8)
    ax.scatter([0] * len(runs), [run["app_tokens_per_s"] for run in runs], color="black", s=10, zorder=3)
    ax.scatter([1] * len(runs), [run["llama_bench_tokens_per_s"] for run in runs], color="black", s=10, zorder=3)
    ax.set_xticks([0, 1], ["app (at the GUI)", "llama-bench tg"])
    ax.set_ylabel("tokens/s")
    ax.set_title(f"Decode: ratio {figures['ratio']:.3f} (goal ≥ {figures['goal']})\n"
                 f"{figures['tokens']} tokens, {figures['threads']} threads, {len(runs)} pairs")


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
    gui, engine, model = (figures[key] / MIB for key in ("gui_rss", "engine_rss_without_model", "model_file_rss"))
    ax.bar([0], [gui], color=APP, label="GUI process RSS")
    ax.bar([0], [engine], bottom=[gui], color="#5dade2", label="engine RSS without model")
    ax.bar([0], [model], bottom=[gui + engine], color="white", edgecolor=REFERENCE, hatch="//",
           label="model file (not counted)")
    ax.axhline(figures["goal_mb"], label=f"goal < {figures['goal_mb']} MB", **GOAL)
    ax.set_xticks([0], ["app"])
    ax.set_xlim(-1, 1)
    ax.set_ylabel("MB")
    ax.legend(fontsize=7)
    ax.set_title(f"Memory: {figures['total_without_model'] / MIB:.0f} MB without the model")


def table(results: dict[str, Any]) -> str:
    """The figures against their goals, as the Markdown table of docs/BENCHMARKS.md."""
    rows = ["| figure | measured | goal | met |", "|---|---|---|---|"]

    def row(name: str, met: bool, shown: str, goal_text: str) -> None:
        rows.append(f"| {name} | {shown} | {goal_text} | {'yes' if met else 'no'} |")

    for key in ("decode_ratio", "decode_ratio_all_cores"):
        if key in results:
            d = results[key]
            row(f"decode speed, app ÷ llama-bench ({d['threads']} thread{'s' if d['threads'] > 1 else ''})",
                d["ratio"] >= d["goal"],
                f"{d['ratio']:.3f} ({d['app_median']:.0f} vs {d['llama_bench_median']:.0f} tok/s)", f"≥ {d['goal']}")
    if "ttft_turns" in results:
        d = results["ttft_turns"]
        row(f"time to first token, turn {d['turns'][-1]['turn']} ÷ turn 1", d["ratio"] <= d["goal"],
            f"{d['ratio']:.2f}× ({d['turns'][0]['seen_s'] * 1000:.0f} → {d['turns'][-1]['seen_s'] * 1000:.0f} ms)",
            f"≤ {d['goal']}×")
        k = d.get("kv_restore", {})
        if "ratio" in k:
            row(f"reopening a {k.get('conversation_tokens', '~4k')}-token chat, restored ÷ cold TTFT",
                k["ratio"] <= k["goal"], f"{k['ratio']:.3f} ({k['cold_s']:.2f} → {k['restored_s']:.2f} s)",
                f"≤ {k['goal']}")
    for key in ("gui_smoothness", "gui_smoothness_all_cores"):
        if key in results:
            d = results[key]
            row(f"longest GUI stall while streaming, {d['messages']} messages (engine on {d['threads']} "
                f"thread{'s' if d['threads'] > 1 else ''})", d["max_ms"] < d["goal_ms"],
                f"{d['max_ms']:.1f} ms (p99 {d['p99_ms']:.1f} ms)", f"< {d['goal_ms']} ms")
    if "startup" in results:
        d = results["startup"]
        for label in ("first_run", "returning_user"):
            if label in d:
                row(f"process start → usable window ({label.replace('_', ' ')})", d[label]["usable_s"] < d["goal_s"],
                    f"{d[label]['usable_s']:.2f} s", f"< {d['goal_s']} s")
        rows.append(f"| model load (engine process spawn + load) | {d['model_load_s']:.2f} s | — | — |")
    if "memory" in results:
        d = results["memory"]
        row("app RSS without the model file", d["total_without_model"] / MIB < d["goal_mb"],
            f"{d['total_without_model'] / MIB:.0f} MB (GUI {d['gui_rss'] / MIB:.0f} + engine "
            f"{d['engine_rss_without_model'] / MIB:.0f})", f"< {d['goal_mb']} MB")
    return "\n".join(rows)


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
