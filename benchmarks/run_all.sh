#!/usr/bin/env bash
# Run every figure of docs/BENCHMARKS.md: builds llama-bench and llama-rss (cached) first, gathers
# the figures in one JSON file, keeps everything printed beside it, draws the plot, and ends with
# every goal: figure, measured, goal, met (benchmarks/goals.py).
#   benchmarks/run_all.sh [RESULTS_JSON]    (default: benchmarks/results.json, plot docs/benchmarks.png)
# Quick smoke run (small sizes; checks the path, its figures are not results):
#   QUICK=1 benchmarks/run_all.sh /tmp/quick.json     (plot beside the JSON, never into docs/)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
python="$root/.venv/bin/python"
results=$(realpath -m "${1:-$root/benchmarks/results.json}")
log="${results%.json}.txt"
if [ "$results" = "$root/benchmarks/results.json" ]; then plot="$root/docs/benchmarks.png"; else plot="${results%.json}.png"; fi
rm -f "$results"
mkdir -p "$(dirname "$results")"
export QT_QPA_PLATFORM=offscreen

if [ "${QUICK:-0}" = 1 ]; then
  decode=(--tokens 24 --pairs 1); ttft=(--turns 4 --repetitions 1 --kv-runs 1)
  gui=(--replies 1 --tokens 40); startup=(--runs 2); speculative=(--tokens 32 --pairs 1)
  serve=(--tokens 32 --runs 2); tables=(--quick); plans=(--depth 300); portable=(--pairs 2 --tokens 48)
  memory=(--messages 100); under_load=(--tokens 24 --rounds 1)
  documents=(--pages 40 --chunks 1000 --distractors 20 --cost-chunks 8)
else
  decode=(); ttft=(); gui=(); startup=(); speculative=(); serve=(); tables=(); plans=(); portable=(); memory=(); under_load=()
  documents=()
fi

bench=$(benchmarks/build_llama_bench.sh)
reference=$(benchmarks/build_llama_rss.sh)
step() { echo "== $* (load average $(cut -d' ' -f1-3 /proc/loadavg))"; }
{
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  step "decode_ratio.py (the app's default threads)"
  "$python" benchmarks/decode_ratio.py --bench "$bench" --results "$results" "${decode[@]}"
  step "decode_ratio.py, every core decoding"
  "$python" benchmarks/decode_ratio.py --bench "$bench" --results "$results" --threads "$(nproc)" \
    --key decode_ratio_all_cores "${decode[@]}"
  step "decode_under_load.py (a program keeping one core busy, in turn with none)"
  "$python" benchmarks/decode_under_load.py --bench "$bench" --results "$results" "${under_load[@]}"
  step "speculative.py"; "$python" benchmarks/speculative.py --results "$results" "${speculative[@]}"
  step "memory.py";      "$python" benchmarks/memory.py --reference "$reference" --results "$results" "${memory[@]}"
  step "serve_speed.py (the server as a user starts it)"
  "$python" benchmarks/serve_speed.py --results "$results" "${serve[@]}"
  step "ttft_turns.py";  "$python" benchmarks/ttft_turns.py --results "$results" "${ttft[@]}"
  step "gui_smoothness.py"; "$python" benchmarks/gui_smoothness.py --results "$results" "${gui[@]}"
  step "gui_smoothness.py, every core decoding"
  "$python" benchmarks/gui_smoothness.py --results "$results" --threads "$(nproc)" --key gui_smoothness_all_cores \
    "${gui[@]}"
  step "startup.py";     "$python" benchmarks/startup.py --results "$results" "${startup[@]}"
  step "llama_bench_tables.py"
  "$python" benchmarks/llama_bench_tables.py --bench "$bench" --results "$results" "${tables[@]}"
  step "memory_plans.py"
  "$python" benchmarks/memory_plans.py --reference "$reference" --results "$results" "${plans[@]}"
  step "documents_bench.py"
  "$python" benchmarks/documents_bench.py --results "$results" "${documents[@]}"
  if [ -x build/portable-venv/bin/python ] && [ -d build/dist-portable/slmchat ]; then
    step "portable_speed.py"; "$python" benchmarks/portable_speed.py --results "$results" "${portable[@]}"
  else
    step "portable_speed.py: no portable bundle (bash packaging/build_linux.sh --portable), skipped"
  fi
  echo "== $(date -u +%Y-%m-%dT%H:%M:%SZ), load average: $(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$log"
if "$python" -c 'import matplotlib' 2>/dev/null; then
  "$python" benchmarks/plot.py "$results" "$plot" >/dev/null && echo "plot: ${plot#"$root"/}" | tee -a "$log"
else
  echo "no plot: matplotlib is not installed (.venv/bin/pip install matplotlib)" | tee -a "$log"
fi
echo "== every goal" | tee -a "$log"
"$python" benchmarks/goals.py "$results" | tee -a "$log"
echo "figures: $results; output: $log"
