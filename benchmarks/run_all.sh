#!/usr/bin/env bash
# Run every speed and memory figure of docs/BENCHMARKS.md: builds llama-bench (cached) first,
# gathers the figures in one JSON file, keeps everything printed beside it, then draws the plot.
#   benchmarks/run_all.sh [RESULTS_JSON]    (default: benchmarks/results.json)
# Quick smoke run (small sizes): QUICK=1 benchmarks/run_all.sh quick-results.json
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python="$root/.venv/bin/python"
results=$(realpath -m "${1:-$root/benchmarks/results.json}")
log="${results%.json}.txt"
rm -f "$results"
mkdir -p "$(dirname "$results")"
export QT_QPA_PLATFORM=offscreen

if [ "${QUICK:-0}" = 1 ]; then
  decode=(--tokens 64 --pairs 2); ttft=(--turns 4 --repetitions 1 --kv-runs 1)
  gui=(--replies 1 --tokens 40); startup=(--runs 2)
else
  decode=(); ttft=(); gui=(); startup=()
fi

bench=$(benchmarks/build_llama_bench.sh)
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "== decode_ratio.py (the app's own threads: a core left for the window)"
  "$python" benchmarks/decode_ratio.py --bench "$bench" --results "$results" "${decode[@]}"
  echo "== decode_ratio.py, every core decoding"
  "$python" benchmarks/decode_ratio.py --bench "$bench" --results "$results" --threads "$(nproc)" \
    --key decode_ratio_all_cores "${decode[@]}"
  echo "== ttft_turns.py";     "$python" benchmarks/ttft_turns.py --results "$results" "${ttft[@]}"
  echo "== gui_smoothness.py"; "$python" benchmarks/gui_smoothness.py --results "$results" "${gui[@]}"
  echo "== gui_smoothness.py, every core decoding"
  "$python" benchmarks/gui_smoothness.py --results "$results" --threads "$(nproc)" --key gui_smoothness_all_cores \
    "${gui[@]}"
  echo "== startup.py";        "$python" benchmarks/startup.py --results "$results" "${startup[@]}"
  echo "== memory.py";         "$python" benchmarks/memory.py --results "$results"
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$log"
"$python" benchmarks/plot.py "$results" docs/benchmarks.png | tee -a "$log"
echo "figures: $results; output: $log; plot: docs/benchmarks.png"
