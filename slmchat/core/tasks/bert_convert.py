"""Hugging Face BERT-family checkpoints (safetensors) to GGUF, with numpy and the gguf writer.

llama.cpp's own converter imports torch (gigabytes) and has no DistilBERT at all, while the
line-up's encoders (all-MiniLM-L6-v2, TinyBERT, DistilBERT SST-2) ship as safetensors. This maps
their tensors onto llama.cpp's "bert" architecture, which computes the same post-LayerNorm
encoder. What each checkpoint becomes:

- BertModel / DistilBertModel (sentence encoders): embeddings, pooling from the
  sentence-transformers `1_Pooling` config (mean when absent).
- BertForSequenceClassification: pooler (dense + tanh) and classifier map onto llama.cpp's own
  head (`cls`, `cls.output`, pooling RANK): llama.cpp returns the logits.
- DistilBertForSequenceClassification: its head is pre_classifier + ReLU, which llama.cpp cannot
  express. The file declares CLS pooling (llama.cpp returns the [CLS] hidden state), keeps the
  head in `cls` / `cls.output` and names the activation under HEAD_ACTIVATION_KEY;
  embeddings.Classifier applies it in numpy.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load_file

from slmchat.core.errors import UnsupportedModel
from slmchat.core.tasks.capabilities import HEAD_ACTIVATION_KEY

_EMBEDDINGS = {
    "embeddings.word_embeddings": "token_embd",
    "embeddings.token_type_embeddings": "token_types",
    "embeddings.position_embeddings": "position_embd",
    "embeddings.LayerNorm": "token_embd_norm",
}
_LAYER_PREFIXES = ("encoder.layer.", "transformer.layer.")  # BERT, DistilBERT
_LAYER_PARTS = {
    "attention.self.query": "attn_q", "attention.q_lin": "attn_q",
    "attention.self.key": "attn_k", "attention.k_lin": "attn_k",
    "attention.self.value": "attn_v", "attention.v_lin": "attn_v",
    "attention.output.dense": "attn_output", "attention.out_lin": "attn_output",
    "attention.output.LayerNorm": "attn_output_norm", "sa_layer_norm": "attn_output_norm",
    "intermediate.dense": "ffn_up", "ffn.lin1": "ffn_up",
    "output.dense": "ffn_down", "ffn.lin2": "ffn_down",
    "output.LayerNorm": "layer_output_norm", "output_layer_norm": "layer_output_norm",
}
_HEADS = {
    "BertForSequenceClassification": {"pooler.dense": "cls", "classifier": "cls.output"},
    "DistilBertForSequenceClassification": {"pre_classifier": "cls", "classifier": "cls.output"},
}
_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}


@dataclass(frozen=True)
class _Shape:
    n_ctx: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    eps: float
    token_types: int


def _shape(config: dict[str, Any]) -> _Shape:
    if config.get("model_type") == "distilbert":
        if config.get("sinusoidal_pos_embds"):
            raise UnsupportedModel("This DistilBERT uses sinusoidal positions, which llama.cpp's BERT lacks.")
        activation = config.get("activation", "gelu")
        shape = _Shape(config["max_position_embeddings"], config["dim"], config["hidden_dim"],
                       config["n_layers"], config["n_heads"], 1e-12, 1)
    else:
        activation = config.get("hidden_act", "gelu")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise UnsupportedModel("This BERT uses relative positions, which llama.cpp's BERT lacks.")
        shape = _Shape(config["max_position_embeddings"], config["hidden_size"], config["intermediate_size"],
                       config["num_hidden_layers"], config["num_attention_heads"],
                       config.get("layer_norm_eps", 1e-12), config.get("type_vocab_size", 2))
    if activation != "gelu":
        raise UnsupportedModel(f"llama.cpp's BERT runs GELU layers; this model uses {activation}.")
    return shape


def tensor_name(hf_name: str, architecture: str) -> str | None:
    """llama.cpp's name for a Hugging Face tensor, or None for one the GGUF does not keep."""
    name = hf_name.removeprefix("bert.").removeprefix("distilbert.")
    stem, _, kind = name.rpartition(".")
    kind = {"gamma": "weight", "beta": "bias"}.get(kind, kind)  # old TF-converted checkpoints
    if stem in _EMBEDDINGS:
        return f"{_EMBEDDINGS[stem]}.{kind}"
    if stem in _HEADS.get(architecture, {}):
        return f"{_HEADS[architecture][stem]}.{kind}"
    for prefix in _LAYER_PREFIXES:
        if stem.startswith(prefix):
            index, _, part = stem.removeprefix(prefix).partition(".")
            return f"blk.{index}.{_LAYER_PARTS[part]}.{kind}" if part in _LAYER_PARTS else None
    return None  # position_ids, an unused pooler, masked-LM heads


def _pooling(source: Path, architecture: str) -> gguf.PoolingType:
    if architecture == "BertForSequenceClassification":
        return gguf.PoolingType.RANK
    if architecture == "DistilBertForSequenceClassification":
        return gguf.PoolingType.CLS
    pooling_config = source / "1_Pooling" / "config.json"
    if pooling_config.is_file() and json.loads(pooling_config.read_text(encoding="utf-8")).get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    return gguf.PoolingType.MEAN


def _vocabulary(source: Path) -> tuple[list[str], list[int]]:
    """vocab.txt in llama.cpp's phantom-space form: words gain a leading ▁, ## pieces lose ##."""
    words = (source / "vocab.txt").read_text(encoding="utf-8").splitlines()
    specials = set(_SPECIALS.values())
    missing = specials.difference(words)
    if missing:
        raise UnsupportedModel(f"The vocabulary lacks {', '.join(sorted(missing))}.")
    tokens = [w if w in specials else (w[2:] if w.startswith("##") else "\u2581" + w) for w in words]
    types = [gguf.TokenType.CONTROL if w in specials else gguf.TokenType.NORMAL for w in words]
    return tokens, types


def _lowercases(source: Path) -> bool:
    config = source / "tokenizer_config.json"
    if not config.is_file():
        return True
    return bool(json.loads(config.read_text(encoding="utf-8")).get("do_lower_case", True))


def convert_bert(source: str | os.PathLike[str], target: str | os.PathLike[str], *, f16: bool = True) -> Path:
    """Write `target` (GGUF) from the Hugging Face folder `source`; atomic, returns `target`.

    Matrices are F16 when `f16` (K-quants need rows in multiples of 256, which MiniLM's 384
    is not), except token_types: llama.cpp adds a row of it to F32 activations with an op that
    has no F16 kernel and aborts. Norms, biases and classifier heads stay F32.
    """
    source, target = Path(source), Path(target)
    config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    if not (source / "model.safetensors").is_file():
        raise UnsupportedModel("Only safetensors checkpoints can be converted (model.safetensors is missing).")
    partial = target.with_name(target.name + ".partial")
    try:
        _write(partial, source, config, f16=f16)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    return target


def _write(path: Path, source: Path, config: dict[str, Any], *, f16: bool) -> None:
    architecture = (config.get("architectures") or ["BertModel"])[0]
    shape = _shape(config)
    tokens, types = _vocabulary(source)
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name(config.get("_name_or_path") or source.name)
    writer.add_context_length(shape.n_ctx)
    writer.add_embedding_length(shape.n_embd)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_block_count(shape.n_layer)
    writer.add_head_count(shape.n_head)
    writer.add_layer_norm_eps(shape.eps)
    writer.add_causal_attention(False)
    writer.add_token_type_count(shape.token_types)
    writer.add_pooling_type(_pooling(source, architecture))
    if architecture in _HEADS:
        labels = config.get("id2label") or {}
        writer.add_classifier_output_labels([labels[key] for key in sorted(labels, key=int)])
    if architecture == "DistilBertForSequenceClassification":
        writer.add_string(HEAD_ACTIVATION_KEY, "relu")
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    for key, word in _SPECIALS.items():
        getattr(writer, f"add_{key}_token_id")(tokens.index(word))
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)
    writer.add_bool("tokenizer.ggml.normalizer.lowercase", _lowercases(source))
    for hf_name, array in load_file(source / "model.safetensors").items():
        name = tensor_name(hf_name, architecture)
        if name is None:
            continue
        as_f16 = f16 and array.ndim == 2 and not name.startswith(("token_types.", "cls."))
        writer.add_tensor(name, array.astype(np.float16 if as_f16 else np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
