"""Every goal of docs/BENCHMARKS.md against run_all.sh's results JSON: figure, measured, goal, met.

Reads only the JSON (no model, no matplotlib), so run_all.sh prints it last and plot.py reuses
the same rows for the doc's table. A figure whose script did not run (or has not been written
yet) shows as "not measured".

    .venv/bin/python benchmarks/goals.py benchmarks/results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1024**2
SPECULATIVE_PROMPTS = ("rewrite", "summarise", "code_edit")
GOAL_RECALL = 0.9


@dataclass(frozen=True)
class Row:
    figure: str
    measured: str
    goal: str
    met: bool | None  # None: shown for reference, no goal; or not measured

    def cells(self) -> list[str]:
        return [self.figure, self.measured, self.goal, {True: "yes", False: "no", None: "—"}[self.met]]


def _plural(threads: int) -> str:
    return f"{threads} thread{'s' if threads != 1 else ''}"


def _missing(figure: str, goal: str) -> Row:
    return Row(figure, "not measured", goal, None)


def decode_rows(results: dict[str, Any]) -> list[Row]:
    """decode_ratio.py, run twice: the app's default threads (a reply starts on `threads` and the
    engine follows the load from there) and every core fixed."""
    rows = []
    for key, label in (("decode_ratio", "default: {} to start, every free core while the machine is idle"),
                       ("decode_ratio_all_cores", "{}, fixed")):
        d = results.get(key)
        if not d:
            if key == "decode_ratio":
                rows.append(_missing("decode speed, app ÷ llama-bench at its best thread count", "≥ 0.95"))
            continue
        threads = label.format(_plural(d["threads"]))
        if "best_threads" not in d:  # a results file from before the best-thread reference
            rows.append(Row(f"decode speed, app ({threads}) ÷ llama-bench at {_plural(d['threads'])}",
                            f"{d['ratio']:.3f}", "—", None))
            continue
        rows.append(Row(f"decode speed, app ({threads}) ÷ llama-bench at its best ({_plural(d['best_threads'])})",
                        f"{d['ratio']:.3f} ({d['app_median']:.0f} vs {d['llama_bench_best_median']:.0f} tok/s)",
                        f"≥ {d['goal']}", d["ratio"] >= d["goal"]))
        if d["best_threads"] != d["threads"]:
            rows.append(Row(f"decode speed, app ({threads}) ÷ llama-bench at {_plural(d['threads'])}",
                            f"{d['ratio_same_threads']:.3f} ({d['app_median']:.0f} vs "
                            f"{d['llama_bench_median']:.0f} tok/s)", "— (reference)", None))
        if "engine_alone_median" in d:
            rows.append(Row(f"decode speed, the engine process without the window ({threads}) ÷ llama-bench "
                            f"at its best", f"{d['ratio_engine_alone']:.3f} ({d['engine_alone_median']:.0f} vs "
                            f"{d['llama_bench_best_median']:.0f} tok/s)", "— (reference)", None))
    return rows


def under_load_rows(results: dict[str, Any]) -> list[Row]:
    """decode_under_load.py: the app with a program keeping one core busy ÷ the app alone, and
    the app alone ÷ llama-bench at its best, measured in turn."""
    d = results.get("decode_under_load")
    if not d or "loaded_ratio" not in d:
        return [_missing("decode speed under load ÷ unloaded (decode_under_load.py)", "≥ 0.8")]
    return [Row("decode speed with a core hog ÷ alone (decode_under_load.py)", f"{d['loaded_ratio']:.3f}",
                f"≥ {d['loaded_goal']}", d["loaded_ratio"] >= d["loaded_goal"]),
            Row("decode speed alone ÷ llama-bench at its best (decode_under_load.py, same run)",
                f"{d['unloaded_ratio']:.3f}", f"≥ {d['unloaded_goal']}", d["unloaded_ratio"] >= d["unloaded_goal"])]


def speculative_rows(results: dict[str, Any]) -> list[Row]:
    """speculative.py: per prompt, the median of the pairwise auto ÷ off speed ratios."""
    d = results.get("speculative")
    if not d:
        return [_missing("speculative decoding, on ÷ off (rewrite, summarise, code edit)", "≥ 1.5×"),
                _missing("speculative decoding, on ÷ off (prose)", "≥ 0.97×")]
    rows = []

    def ratio(name: str) -> float:
        speeds = d[name]
        return statistics.median(a / o for a, o in zip(speeds["auto"], speeds["off"]))

    for prompt in SPECULATIVE_PROMPTS:
        name = f"repeating/{prompt}"
        if name in d:
            value = ratio(name)
            rows.append(Row(f"speculative decoding, on ÷ off: {prompt.replace('_', ' ')}", f"{value:.2f}×",
                            "≥ 1.5×", value >= 1.5))
    if "prose auto/off" in d:
        value = d["prose auto/off"]
        rows.append(Row("speculative decoding, on ÷ off: prose (median of its prompts)", f"{value:.2f}×",
                        "≥ 0.97×", value >= 0.97))
    return rows


def memory_rows(results: dict[str, Any]) -> list[Row]:
    d = results.get("memory") or {}
    gui_goal = d.get("gui_goal_mb", 120)
    rows = [Row(f"window's process RSS ({d.get('shown', 500)} messages shown)", f"{d['gui_rss'] / MIB:.0f} MB",
                f"≤ {gui_goal} MB",
                d["gui_rss"] / MIB <= gui_goal) if "gui_rss" in d else _missing("window's process RSS", "≤ 120 MB")]
    if "engine_over_llama_rss" not in d:  # also a results file from before the llama.cpp reference
        return [*rows, _missing("model process RSS − llama.cpp's own RSS (same model, context, cache types)",
                                "≤ 40 MB")]
    over = d["engine_over_llama_rss"] / MIB
    return [*rows, Row("model process RSS − llama.cpp's own RSS (llama-rss, same settings)",
                       f"{over:.0f} MB ({d['engine']['rss'] / MIB:.0f} vs {d['llama_cpp']['rss'] / MIB:.0f} MB)",
                       f"≤ {d['engine_over_llama_goal_mb']} MB", over <= d["engine_over_llama_goal_mb"])]


def serve_rows(results: dict[str, Any]) -> list[Row]:
    """serve_speed.py: the server against EngineClient, and against llama-bench where it measures that."""
    d = results.get("serve_speed")
    if not d or "ratio" not in d:
        return [_missing("decode through the server ÷ llama-bench at its best thread count", "≥ 0.95"),
                _missing("first piece: added by the server", "< 10 ms")]
    rows = []
    threads = _plural(d["threads"]) if d.get("threads_fixed", True) else f"its default: {d['threads']} to start"
    if "ratio_llama_bench_best" in d:
        rows.append(Row(f"decode through the server (openai client, {threads}) ÷ llama-bench at its "
                        f"best ({_plural(int(d['best_threads']))})", f"{d['ratio_llama_bench_best']:.3f}", "≥ 0.95",
                        d["ratio_llama_bench_best"] >= 0.95))
    rows.append(Row(f"decode through the server (openai client) ÷ through EngineClient ({threads})",
                    f"{d['ratio']:.3f}", "≥ 0.95", d["ratio"] >= 0.95))
    rows.append(Row("first piece: added by the server", f"{d['added_first_piece_ms']:.1f} ms", "< 10 ms",
                    d["added_first_piece_ms"] < 10))
    return rows


def ttft_rows(results: dict[str, Any]) -> list[Row]:
    d = results.get("ttft_turns")
    if not d:
        return [_missing("time to first token, last turn ÷ turn 1", "≤ 1.2×")]
    first, last = d["turns"][0], d["turns"][-1]
    rows = [Row(f"time to first token, turn {last['turn']} ÷ turn 1",
                f"{d['ratio']:.2f}× ({first['seen_s'] * 1000:.0f} → {last['seen_s'] * 1000:.0f} ms)",
                f"≤ {d['goal']}×", d["ratio"] <= d["goal"])]
    k = d.get("kv_restore", {})
    if "ratio" in k:
        rows.append(Row(f"reopening a {k.get('conversation_tokens', '~4k')}-token chat, restored ÷ cold TTFT",
                        f"{k['ratio']:.3f} ({k['cold_s']:.2f} → {k['restored_s']:.2f} s)", f"≤ {k['goal']}",
                        k["ratio"] <= k["goal"]))
    return rows


def smoothness_rows(results: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (("gui_smoothness", "default threads: {} to start"), ("gui_smoothness_all_cores", "{}, fixed")):
        d = results.get(key)
        if d:
            rows.append(Row(f"longest GUI stall while streaming, {d['messages']} messages "
                            f"({label.format(_plural(d['threads']))})",
                            f"{d['max_ms']:.1f} ms (p99 {d['p99_ms']:.1f} ms)",
                            f"< {d['goal_ms']} ms", d["max_ms"] < d["goal_ms"]))
    return rows or [_missing("longest GUI stall while streaming", "< 16 ms")]


def startup_rows(results: dict[str, Any]) -> list[Row]:
    d = results.get("startup")
    if not d:
        return [_missing("process start → usable window", "< 1.0 s")]
    rows = [Row(f"process start → usable window ({label.replace('_', ' ')})", f"{d[label]['usable_s']:.2f} s",
                f"< {d['goal_s']} s", d[label]["usable_s"] < d["goal_s"])
            for label in ("first_run", "returning_user") if label in d]
    rows.append(Row("model load (engine process spawn + load)", f"{d['model_load_s']:.2f} s", "—", None))
    return rows


def portable_rows(results: dict[str, Any]) -> list[Row]:
    """portable_speed.py, run only where the portable bundle is built: no row otherwise."""
    d = results.get("portable_speed")
    if not d:
        return []
    return [Row(f"decode speed, portable bundle ÷ native build (ggml chose {d['variant']})", f"{d['ratio']:.3f}",
                "≥ 0.97", d["ratio"] >= 0.97)]


def documents_rows(results: dict[str, Any]) -> list[Row]:
    """documents_bench.py: indexing throughput, query latency, recall@5 (and its two halves)."""
    d = results.get("documents") or {}
    rows = []
    t = d.get("throughput")
    if t and "vectors" in t:
        v, words = t["vectors"], t.get("words_only")
        rows.append(Row(f"indexing {t['pages']:,} pages of {t['page_chars']:,} characters with MiniLM vectors "
                        f"({d['minilm']}, {v['chunks']:,} passages)",
                        f"{v['seconds']:.0f} s ({v['pages_per_min']:.0f} pages/min)",
                        f"≥ {t['goal_pages_per_min']} pages/min (1,000 pages < 2 min)",
                        v["pages_per_min"] >= t["goal_pages_per_min"]))
        if words:
            rows.append(Row("indexing the same pages, words only (searchable by words)",
                            f"{words['seconds']:.1f} s ({words['pages_per_min']:.0f} pages/min)", "— (reference)",
                            None))
    else:
        rows.append(_missing("indexing 1,000 pages with MiniLM vectors", "< 2 min"))
    q = d.get("latency")
    rows.append(Row(f"document query over {q['chunks']:,} passages (hybrid, question embedded)",
                    f"median {q['median_ms']:.0f} ms (p95 {q['p95_ms']:.0f} ms)", f"< {q['goal_ms']} ms",
                    q["median_ms"] < q["goal_ms"]) if q else _missing("document query over 10,000 passages", "< 100 ms"))
    for key, label in (("recall_corpus", "the public-domain corpus"), ("recall", "the corpus")):
        r = d.get(key)
        if not r:
            rows.append(_missing(f"recall@5 over {label}", f"≥ {GOAL_RECALL}"))
            continue
        extra = f" + {r['distractors']} near-duplicate distractors" if r["distractors"] else ""
        rows.append(Row(f"recall@5 over {label}{extra} ({r['questions']} questions, {r['chunks']} passages): "
                        f"hybrid (words only; meaning only)",
                        f"{r['hybrid']:.3f} ({r['fts']:.3f}; {r['vector']:.3f})", f"≥ {r['goal']}",
                        r["hybrid"] >= r["goal"]))
    return rows


def rows(results: dict[str, Any]) -> list[Row]:
    return [*decode_rows(results), *under_load_rows(results), *speculative_rows(results), *memory_rows(results),
            *serve_rows(results), *ttft_rows(results), *smoothness_rows(results), *startup_rows(results),
            *portable_rows(results), *documents_rows(results)]


def table(results: dict[str, Any]) -> str:
    """The figures against their goals, as the Markdown table of docs/BENCHMARKS.md."""
    lines = ["| figure | measured | goal | met |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows(results)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    args = parser.parse_args()
    print(table(json.loads(args.results.read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
