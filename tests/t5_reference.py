"""An independent numpy forward pass of T5's encoder-decoder (T5ForConditionalGeneration).

Written from the Hugging Face definition (modeling_t5.py), not from llama.cpp's graph: relative
position buckets (bidirectional in the encoder, causal in the decoder, max_distance 128, only the
first layer owns the bias table), RMS norm without mean subtraction, no scaling of attention
scores, a gated-GELU feed-forward (flan-t5, "gelu_new": the tanh form) or a plain ReLU one (the
original T5), and the lm_head: its own matrix (untied, flan-t5) or the shared embedding after
scaling the decoder output by d_model**-0.5 (tied, the original T5).

Weights are looked up under the names llama.cpp's converter gives Hugging Face's tensors:

    shared / encoder.embed_tokens                  token_embd
    {encoder,decoder}.block.i.layer.0.SelfAttention.{q,k,v,o}      {enc,dec}.blk.i.attn_{q,k,v,o}
    {...}.block.0.layer.0.SelfAttention.relative_attention_bias    {enc,dec}.blk.0.attn_rel_b
    {...}.block.i.layer.0.layer_norm               {enc,dec}.blk.i.attn_norm
    decoder.block.i.layer.1.EncDecAttention.{q,k,v,o}, layer_norm  dec.blk.i.cross_attn_{q,k,v,o}, _norm
    {...}.block.i.layer.-1.DenseReluDense.{wi_0,wi_1,wi,wo}         ffn_gate, ffn_up, ffn_up, ffn_down
    {...}.block.i.layer.-1.layer_norm              ffn_norm
    {encoder,decoder}.final_layer_norm             {enc,dec}.output_norm
    lm_head                                        output (absent when tied)

Matrices keep Hugging Face's (out_features, in_features) layout. Everything runs in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_DISTANCE = 128  # T5's relative_attention_max_distance


@dataclass(frozen=True)
class T5Shape:
    n_head: int
    n_buckets: int  # relative_attention_num_buckets
    eps: float  # layer_norm_epsilon


def relative_position_bucket(relative_position: np.ndarray, *, bidirectional: bool, num_buckets: int,
                             max_distance: int = MAX_DISTANCE) -> np.ndarray:
    """T5Attention._relative_position_bucket: `relative_position` is key position minus query
    position; small distances get a bucket each, larger ones share log-spaced buckets."""
    buckets = np.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).astype(relative_position.dtype) * num_buckets
        relative_position = np.abs(relative_position)
    else:
        relative_position = -np.minimum(relative_position, 0)
    max_exact = num_buckets // 2
    with np.errstate(divide="ignore"):  # log(0) where the distance is small: not used there
        large = max_exact + (np.log(relative_position / max_exact) / math.log(max_distance / max_exact)
                             * (num_buckets - max_exact))
    large = np.minimum(np.where(relative_position < max_exact, 0, large).astype(np.int64), num_buckets - 1)
    return buckets + np.where(relative_position < max_exact, relative_position, large)


def position_bias(table: np.ndarray, n_query: int, n_key: int, *, bidirectional: bool) -> np.ndarray:
    """T5Attention.compute_bias: (heads, queries, keys) from the (buckets, heads) table."""
    relative = np.arange(n_key)[None, :] - np.arange(n_query)[:, None]
    buckets = relative_position_bucket(relative, bidirectional=bidirectional, num_buckets=table.shape[0])
    return table[buckets].astype(np.float64).transpose(2, 0, 1)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    """T5LayerNorm: scale by the root mean square, no mean subtracted, no bias."""
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * weight


def _gelu_new(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _mm(x: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return x @ matrix.astype(np.float64).T


def attention(w: dict[str, np.ndarray], name: str, queries: np.ndarray, keys: np.ndarray, n_head: int,
              bias: np.ndarray | None) -> np.ndarray:
    """T5Attention without dropout: no 1/sqrt(d) on the scores; `bias` is the position bias
    plus the mask (-inf where a query may not look)."""
    q, k, v = (_mm(x, w[f"{name}_{part}.weight"]) for x, part in ((queries, "q"), (keys, "k"), (keys, "v")))

    def heads(t: np.ndarray) -> np.ndarray:
        return t.reshape(len(t), n_head, -1).transpose(1, 0, 2)

    scores = heads(q) @ heads(k).transpose(0, 2, 1)
    if bias is not None:
        scores = scores + bias
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    context = (scores / scores.sum(axis=-1, keepdims=True)) @ heads(v)
    return _mm(context.transpose(1, 0, 2).reshape(len(queries), -1), w[f"{name}_o.weight"])


def feed_forward(w: dict[str, np.ndarray], prefix: str, x: np.ndarray) -> np.ndarray:
    """T5DenseGatedActDense (gelu_new(wi_0 x) * wi_1 x) when there is a gate, else T5DenseActDense
    (relu(wi x)); then wo."""
    if prefix + "ffn_gate.weight" in w:
        hidden = _gelu_new(_mm(x, w[prefix + "ffn_gate.weight"])) * _mm(x, w[prefix + "ffn_up.weight"])
    else:
        hidden = np.maximum(_mm(x, w[prefix + "ffn_up.weight"]), 0.0)
    return _mm(hidden, w[prefix + "ffn_down.weight"])


def _layers(w: dict[str, np.ndarray], side: str) -> int:
    return sum(1 for name in w if name.startswith(f"{side}.blk.") and name.endswith(".attn_q.weight"))


def encode(w: dict[str, np.ndarray], token_ids: Sequence[int], shape: T5Shape) -> np.ndarray:
    """T5Stack as the encoder: the final-normed hidden states (n_tokens, d_model)."""
    x = w["token_embd.weight"][np.asarray(token_ids)].astype(np.float64)
    bias = position_bias(w["enc.blk.0.attn_rel_b.weight"], len(x), len(x), bidirectional=True)
    for i in range(_layers(w, "enc")):
        p = f"enc.blk.{i}."
        normed = rms_norm(x, w[p + "attn_norm.weight"], shape.eps)
        x = x + attention(w, p + "attn", normed, normed, shape.n_head, bias)
        x = x + feed_forward(w, p, rms_norm(x, w[p + "ffn_norm.weight"], shape.eps))
    return rms_norm(x, w["enc.output_norm.weight"], shape.eps)


def decoder_logits(w: dict[str, np.ndarray], encoded: np.ndarray, decoder_ids: Sequence[int],
                   shape: T5Shape) -> np.ndarray:
    """T5ForConditionalGeneration's lm_logits (n_decoder_tokens, n_vocab) for the decoder input
    `decoder_ids` (the start token, then the tokens chosen so far) over `encoded`."""
    x = w["token_embd.weight"][np.asarray(decoder_ids)].astype(np.float64)
    n = len(x)
    causal = np.where(np.arange(n)[None, :] > np.arange(n)[:, None], -np.inf, 0.0)
    bias = position_bias(w["dec.blk.0.attn_rel_b.weight"], n, n, bidirectional=False) + causal
    for i in range(_layers(w, "dec")):
        p = f"dec.blk.{i}."
        normed = rms_norm(x, w[p + "attn_norm.weight"], shape.eps)
        x = x + attention(w, p + "attn", normed, normed, shape.n_head, bias)
        normed = rms_norm(x, w[p + "cross_attn_norm.weight"], shape.eps)
        x = x + attention(w, p + "cross_attn", normed, encoded, shape.n_head, None)
        x = x + feed_forward(w, p, rms_norm(x, w[p + "ffn_norm.weight"], shape.eps))
    x = rms_norm(x, w["dec.output_norm.weight"], shape.eps)
    if "output.weight" in w:
        return _mm(x, w["output.weight"])
    return _mm(x * x.shape[-1] ** -0.5, w["token_embd.weight"])  # tied: T5 rescales first
