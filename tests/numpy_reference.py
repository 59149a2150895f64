"""An independent numpy forward pass of BERT and DistilBERT over Hugging Face-named weights.

Written from the Hugging Face definitions (BertModel, BertForSequenceClassification,
DistilBertForSequenceClassification), not from llama.cpp's graph or from our converter's name
map, so a wrong mapping or a wrong head shows up as a mismatch. GELU is the exact erf form;
`tanh_gelu=True` gives ggml's approximation for tight comparisons on random weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_erf = np.vectorize(math.erf)

# Per-layer parameter names of each family: query, key, value, attention output, its norm,
# feed-forward in, out, and the layer's final norm.
BERT_LAYER = ("attention.self.query", "attention.self.key", "attention.self.value",
               "attention.output.dense", "attention.output.LayerNorm", "intermediate.dense",
               "output.dense", "output.LayerNorm")
DISTILBERT_LAYER = ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                     "sa_layer_norm", "ffn.lin1", "ffn.lin2", "output_layer_norm")


def _layer_norm(x: np.ndarray, w: dict[str, np.ndarray], name: str, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w[name + ".weight"] + w[name + ".bias"]


def _gelu(x: np.ndarray, tanh_form: bool) -> np.ndarray:
    if tanh_form:
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _linear(w: dict[str, np.ndarray], name: str, x: np.ndarray) -> np.ndarray:
    return x @ w[name + ".weight"].astype(np.float64).T + w[name + ".bias"]


def encoder_hidden(w: dict[str, np.ndarray], token_ids: Sequence[int], *, n_head: int, eps: float = 1e-12,
                   tanh_gelu: bool = False) -> np.ndarray:
    """Last hidden states (n_tokens, n_embd), in float64, of a BERT or DistilBERT checkpoint."""
    distil = any(name.startswith("distilbert.") for name in w)
    root = "distilbert." if distil else ("bert." if any(n.startswith("bert.") for n in w) else "")
    layer_root, parts = (root + "transformer.layer.", DISTILBERT_LAYER) if distil else (root + "encoder.layer.", BERT_LAYER)
    ids = np.asarray(token_ids)
    emb = root + "embeddings."
    x = w[emb + "word_embeddings.weight"][ids].astype(np.float64) + w[emb + "position_embeddings.weight"][: len(ids)]
    if emb + "token_type_embeddings.weight" in w:
        x = x + w[emb + "token_type_embeddings.weight"][0]  # every token is "sentence A"
    x = _layer_norm(x, w, emb + "LayerNorm", eps)
    n_tokens, n_embd = x.shape
    head_dim = n_embd // n_head

    def heads(t: np.ndarray) -> np.ndarray:
        return t.reshape(n_tokens, n_head, head_dim).transpose(1, 0, 2)

    layer = 0
    while f"{layer_root}{layer}.{parts[0]}.weight" in w:
        q_, k_, v_, out_, attn_norm, up, down, out_norm = (f"{layer_root}{layer}.{p}" for p in parts)
        q, k, v = (heads(_linear(w, name, x)) for name in (q_, k_, v_))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        context = (scores / scores.sum(axis=-1, keepdims=True) @ v).transpose(1, 0, 2).reshape(n_tokens, n_embd)
        x = _layer_norm(_linear(w, out_, context) + x, w, attn_norm, eps)
        x = _layer_norm(_linear(w, down, _gelu(_linear(w, up, x), tanh_gelu)) + x, w, out_norm, eps)
        layer += 1
    return x


def mean_pooled_unit(hidden: np.ndarray) -> np.ndarray:
    """sentence-transformers' MiniLM recipe: mean over all tokens, then L2 normalisation."""
    pooled = hidden.mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def bert_classifier_logits(w: dict[str, np.ndarray], hidden: np.ndarray) -> np.ndarray:
    """BertForSequenceClassification: pooler (dense + tanh) on [CLS], then the classifier."""
    return _linear(w, "classifier", np.tanh(_linear(w, "bert.pooler.dense", hidden[0])))


def distilbert_classifier_logits(w: dict[str, np.ndarray], hidden: np.ndarray) -> np.ndarray:
    """DistilBertForSequenceClassification: pre_classifier + ReLU on [CLS], then the classifier."""
    return _linear(w, "classifier", np.maximum(_linear(w, "pre_classifier", hidden[0]), 0.0))


def distilbert_with_tanh_head(w: dict[str, np.ndarray], hidden: np.ndarray) -> np.ndarray:
    """What llama.cpp's own RANK head would compute from DistilBERT's tensors: the wrong answer."""
    return _linear(w, "classifier", np.tanh(_linear(w, "pre_classifier", hidden[0])))
