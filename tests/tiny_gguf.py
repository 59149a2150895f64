"""Tiny models (random weights, tiny vocabularies) for every non-chat architecture.

Only two real GGUFs ship on the package registry, so the tests make the others. T5 and GPT-2 are
written straight to GGUF: tensor names, shapes and metadata keys follow llama.cpp's own
converter and loader (llama-arch.cpp, src/models/{t5,gpt2}.cpp of the llama.cpp vendored in
llama-cpp-python 0.3.36). The BERT family is written as a Hugging Face checkpoint (config.json,
vocab.txt, model.safetensors) and goes through the app's own converter, slmchat.core.tasks.bert_convert,
so the tests cover the path real MiniLM / DistilBERT checkpoints take.

Numpy arrays keep Hugging Face's (out_features, in_features) layout; the GGUF writer reverses the
shape, which is exactly the {in, out} order llama.cpp expects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from numpy_reference import BERT_LAYER, DISTILBERT_LAYER
from safetensors.numpy import save_file

BERT_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "dog", "sat", "on", "mat", "a", "film",
    "was", "great", "awful", "i", "love", "hate", "this", "movie", "weather", "is", "nice", "today",
    "stock", "market", "##s",
]
TINY_BERT = {"n_embd": 32, "n_head": 4, "n_layer": 2, "n_ff": 64, "n_ctx": 64}


class _Random:
    """Seeded random weights: matrices around 0, vectors around `centre` (1 for norm gains)."""

    def __init__(self, seed: int, *, spread: float = 0.2, vec_spread: float = 0.1) -> None:
        self.rng = np.random.default_rng(seed)
        self.spread, self.vec_spread = spread, vec_spread

    def mat(self, rows: int, cols: int, spread: float | None = None) -> np.ndarray:
        return self.rng.normal(0.0, spread or self.spread, (rows, cols)).astype(np.float32)

    def vec(self, n: int, centre: float = 0.0) -> np.ndarray:
        return (centre + self.rng.normal(0.0, self.vec_spread, n)).astype(np.float32)


def _write(path: Path, arch: str, configure, weights: dict[str, np.ndarray]) -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny-{arch}")
    configure(writer)
    for name, array in weights.items():
        writer.add_tensor(name, np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def rewrite(source: Path, target: Path, *, drop_key: str | None = None,
            f16_tensor: str | None = None) -> Path:
    """A copy of a GGUF, optionally lacking one metadata key (as third-party files may) or with
    one F32 tensor stored as F16."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(str(target), str(reader.get_field("general.architecture").contents()))
    for field in reader.fields.values():
        if field.name == drop_key or field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type)
    for tensor in reader.tensors:
        if tensor.name == f16_tensor:
            writer.add_tensor(tensor.name, np.asarray(tensor.data, dtype=np.float32).astype(np.float16))
        else:
            writer.add_tensor(tensor.name, tensor.data, raw_shape=list(reversed(tensor.shape.tolist())),
                              raw_dtype=tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


# --- BERT family, as Hugging Face checkpoints ---------------------------------------------------
@dataclass
class TinyCheckpoint:
    """A Hugging Face folder and its weights (HF names), for the numpy reference."""

    folder: Path
    weights: dict[str, np.ndarray]
    n_head: int
    labels: list[str]


def _bert_layers(rnd: _Random, prefix: str, parts: tuple[str, ...], n_embd: int, n_ff: int,
                 n_layer: int) -> dict[str, np.ndarray]:
    """q, k, v, attention out, its norm, ffn in, ffn out, output norm, in that order of `parts`."""
    w = {}
    for i in range(n_layer):
        q, k, v, out, attn_norm, up, down, out_norm = (f"{prefix}{i}.{part}" for part in parts)
        for name in (q, k, v, out):
            w[name + ".weight"], w[name + ".bias"] = rnd.mat(n_embd, n_embd), rnd.vec(n_embd)
        w[up + ".weight"], w[up + ".bias"] = rnd.mat(n_ff, n_embd), rnd.vec(n_ff)
        w[down + ".weight"], w[down + ".bias"] = rnd.mat(n_embd, n_ff), rnd.vec(n_embd)
        for name in (attn_norm, out_norm):
            w[name + ".weight"], w[name + ".bias"] = rnd.vec(n_embd, 1.0), rnd.vec(n_embd)
    return w


def _embeddings(rnd: _Random, prefix: str, *, token_types: bool) -> dict[str, np.ndarray]:
    n_embd = TINY_BERT["n_embd"]
    w = {
        prefix + "word_embeddings.weight": rnd.mat(len(BERT_VOCAB), n_embd),
        prefix + "position_embeddings.weight": rnd.mat(TINY_BERT["n_ctx"], n_embd),
        prefix + "LayerNorm.weight": rnd.vec(n_embd, 1.0),
        prefix + "LayerNorm.bias": rnd.vec(n_embd),
    }
    if token_types:
        w[prefix + "token_type_embeddings.weight"] = rnd.mat(2, n_embd)
    return w


def _linear(rnd: _Random, name: str, rows: int, cols: int) -> dict[str, np.ndarray]:
    """Wide weights, so that ReLU and tanh heads give clearly different logits."""
    return {name + ".weight": rnd.mat(rows, cols, spread=0.5), name + ".bias": rnd.vec(rows)}


def _save(folder: Path, config: dict, weights: dict[str, np.ndarray], pooling: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}), encoding="utf-8")
    if pooling:
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(
            json.dumps({"pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_cls_token": pooling == "cls"}),
            encoding="utf-8")
    save_file(weights, str(folder / "model.safetensors"))


def _bert_config(architecture: str, labels: tuple[str, ...]) -> dict:
    config = {
        "architectures": [architecture], "model_type": "bert", "hidden_act": "gelu",
        "hidden_size": TINY_BERT["n_embd"], "intermediate_size": TINY_BERT["n_ff"],
        "num_hidden_layers": TINY_BERT["n_layer"], "num_attention_heads": TINY_BERT["n_head"],
        "max_position_embeddings": TINY_BERT["n_ctx"], "layer_norm_eps": 1e-12, "type_vocab_size": 2,
        "vocab_size": len(BERT_VOCAB),
    }
    if labels:
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    return config


def write_hf_sentence_bert(folder: Path, *, pooling: str | None = "mean", seed: int = 1) -> TinyCheckpoint:
    """all-MiniLM-L6-v2's shape at toy size: a BertModel with a sentence-transformers pooling
    config (and an unused pooler, which the converter must drop)."""
    rnd = _Random(seed)
    n_embd = TINY_BERT["n_embd"]
    w = _embeddings(rnd, "embeddings.", token_types=True)
    w |= _bert_layers(rnd, "encoder.layer.", BERT_LAYER, n_embd, TINY_BERT["n_ff"], TINY_BERT["n_layer"])
    w |= _linear(rnd, "pooler.dense", n_embd, n_embd)
    _save(folder, _bert_config("BertModel", ()), w, pooling)
    return TinyCheckpoint(folder, w, TINY_BERT["n_head"], [])


def write_hf_bert_classifier(folder: Path, *, labels: tuple[str, ...] = ("NEGATIVE", "POSITIVE"),
                             seed: int = 2) -> TinyCheckpoint:
    """BertForSequenceClassification: pooler (dense + tanh) then classifier, llama.cpp's own head."""
    rnd = _Random(seed)
    n_embd = TINY_BERT["n_embd"]
    w = _embeddings(rnd, "bert.embeddings.", token_types=True)
    w |= _bert_layers(rnd, "bert.encoder.layer.", BERT_LAYER, n_embd, TINY_BERT["n_ff"], TINY_BERT["n_layer"])
    w |= _linear(rnd, "bert.pooler.dense", n_embd, n_embd) | _linear(rnd, "classifier", len(labels), n_embd)
    _save(folder, _bert_config("BertForSequenceClassification", labels), w, None)
    return TinyCheckpoint(folder, w, TINY_BERT["n_head"], list(labels))


def write_hf_distilbert_classifier(folder: Path, *, labels: tuple[str, ...] = ("NEGATIVE", "POSITIVE"),
                                   seed: int = 3) -> TinyCheckpoint:
    """DistilBERT SST-2's shape: no token types, head = pre_classifier + ReLU + classifier."""
    rnd = _Random(seed)
    n_embd = TINY_BERT["n_embd"]
    w = _embeddings(rnd, "distilbert.embeddings.", token_types=False)
    w |= _bert_layers(rnd, "distilbert.transformer.layer.", DISTILBERT_LAYER, n_embd, TINY_BERT["n_ff"],
                      TINY_BERT["n_layer"])
    w |= _linear(rnd, "pre_classifier", n_embd, n_embd) | _linear(rnd, "classifier", len(labels), n_embd)
    config = {
        "architectures": ["DistilBertForSequenceClassification"], "model_type": "distilbert",
        "activation": "gelu", "dim": n_embd, "hidden_dim": TINY_BERT["n_ff"], "n_layers": TINY_BERT["n_layer"],
        "n_heads": TINY_BERT["n_head"], "max_position_embeddings": TINY_BERT["n_ctx"],
        "sinusoidal_pos_embds": False, "vocab_size": len(BERT_VOCAB),
        "id2label": {str(i): label for i, label in enumerate(labels)},
    }
    _save(folder, config, w, None)
    return TinyCheckpoint(folder, w, TINY_BERT["n_head"], list(labels))


# --- T5 (flan-t5's encoder-decoder shape) ----------------------------------------------------
T5_PIECES = [
    "\u2581translate", "\u2581English", "\u2581to", "\u2581German", ":", "\u2581summarize",
    "\u2581the", "\u2581house", "\u2581is", "\u2581small", "\u2581das", "\u2581Haus", "\u2581ist",
    "\u2581klein", ".", "\u2581",
] + list("abcdefghijklmnopqrstuvwxyz")


def write_t5(path: Path, *, seed: int = 4) -> Path:
    """flan-t5's layout at toy size: gated-GELU FFN, relative position buckets, untied lm head."""
    n_embd, n_head, n_layer, n_ff, n_buckets = 32, 4, 2, 48, 8
    rnd = _Random(seed, spread=0.3, vec_spread=0.05)
    tokens = ["<pad>", "</s>", "<unk>"] + T5_PIECES
    scores = [0.0, 0.0, 0.0] + [-float(len(p)) * 0.1 - 1.0 for p in T5_PIECES]
    scores[3:9] = [-0.5] * 6  # whole words beat spelling them out
    types = [gguf.TokenType.CONTROL, gguf.TokenType.CONTROL, gguf.TokenType.UNKNOWN] + \
        [gguf.TokenType.NORMAL] * len(T5_PIECES)
    n_vocab = len(tokens)

    mat = rnd.mat

    def norm() -> np.ndarray:
        return rnd.vec(n_embd, 1.0)

    w: dict[str, np.ndarray] = {
        "token_embd.weight": mat(n_vocab, n_embd),
        "output.weight": mat(n_vocab, n_embd),
        "enc.output_norm.weight": norm(),
        "dec.output_norm.weight": norm(),
        "enc.blk.0.attn_rel_b.weight": mat(n_buckets, n_head),
        "dec.blk.0.attn_rel_b.weight": mat(n_buckets, n_head),
    }
    for side in ("enc", "dec"):
        for i in range(n_layer):
            p = f"{side}.blk.{i}."
            w[p + "attn_norm.weight"] = norm()
            for part in ("attn_q", "attn_k", "attn_v", "attn_o"):
                w[p + part + ".weight"] = mat(n_embd, n_embd)
            if side == "dec":
                w[p + "cross_attn_norm.weight"] = norm()
                for part in ("cross_attn_q", "cross_attn_k", "cross_attn_v", "cross_attn_o"):
                    w[p + part + ".weight"] = mat(n_embd, n_embd)
            w[p + "ffn_norm.weight"] = norm()
            w[p + "ffn_gate.weight"] = mat(n_ff, n_embd)
            w[p + "ffn_up.weight"] = mat(n_ff, n_embd)
            w[p + "ffn_down.weight"] = mat(n_embd, n_ff)

    def configure(writer: gguf.GGUFWriter) -> None:
        writer.add_context_length(64)
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(n_ff)
        writer.add_block_count(n_layer)
        writer.add_head_count(n_head)
        writer.add_key_length(n_embd // n_head)
        writer.add_value_length(n_embd // n_head)
        writer.add_layer_norm_rms_eps(1e-6)
        writer.add_relative_attn_buckets_count(n_buckets)
        writer.add_decoder_start_token_id(0)
        writer.add_tokenizer_model("t5")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_pad_token_id(0)
        writer.add_eos_token_id(1)
        writer.add_unk_token_id(2)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(True)

    _write(path, "t5", configure, w)
    return path


# --- GPT-2 (DistilGPT-2's shape) ----------------------------------------------------------------
def _byte_alphabet() -> list[str]:
    """GPT-2's byte-to-unicode table: every byte has a token, so any text tokenizes."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_gpt2(path: Path, *, seed: int = 5) -> Path:
    """DistilGPT-2's layout at toy size: fused QKV, learned positions, tied output, no template."""
    n_embd, n_head, n_layer, n_ff, n_ctx = 32, 4, 2, 64, 64
    rnd = _Random(seed, vec_spread=0.05)
    mat, vec = rnd.mat, rnd.vec
    merges = ["Ġ t", "h e", "Ġt he", "Ġ c", "a t", "Ġc at"]
    tokens = _byte_alphabet() + ["Ġt", "he", "Ġthe", "Ġc", "at", "Ġcat", "<|endoftext|>"]
    n_vocab = len(tokens)
    w = {
        "token_embd.weight": mat(n_vocab, n_embd),
        "position_embd.weight": mat(n_ctx, n_embd),
        "output_norm.weight": vec(n_embd, 1.0),
        "output_norm.bias": vec(n_embd),
    }
    for i in range(n_layer):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = vec(n_embd, 1.0)
        w[p + "attn_norm.bias"] = vec(n_embd)
        w[p + "attn_qkv.weight"] = mat(3 * n_embd, n_embd)
        w[p + "attn_qkv.bias"] = vec(3 * n_embd)
        w[p + "attn_output.weight"] = mat(n_embd, n_embd)
        w[p + "attn_output.bias"] = vec(n_embd)
        w[p + "ffn_norm.weight"] = vec(n_embd, 1.0)
        w[p + "ffn_norm.bias"] = vec(n_embd)
        w[p + "ffn_up.weight"] = mat(n_ff, n_embd)
        w[p + "ffn_up.bias"] = vec(n_ff)
        w[p + "ffn_down.weight"] = mat(n_embd, n_ff)
        w[p + "ffn_down.bias"] = vec(n_embd)

    def configure(writer: gguf.GGUFWriter) -> None:
        writer.add_context_length(n_ctx)
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(n_ff)
        writer.add_block_count(n_layer)
        writer.add_head_count(n_head)
        writer.add_layer_norm_eps(1e-5)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types([gguf.TokenType.NORMAL] * (n_vocab - 1) + [gguf.TokenType.CONTROL])
        writer.add_token_merges(merges)
        writer.add_bos_token_id(n_vocab - 1)
        writer.add_eos_token_id(n_vocab - 1)
        writer.add_add_bos_token(False)

    _write(path, "gpt2", configure, w)
    return path


# --- a chat model whose every next token is set: thinking models' templates, driven exactly ---------
THINKING_SPECIALS = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",  # Qwen3, SmolLM3
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",  # DeepSeek-R1 distills
    "<|system|>", "<|user|>", "<|assistant|>", "<|end|>",  # Phi-4-mini-reasoning
]
THINKING_MARKERS = ["<think>", "</think>"]  # added, not control, tokens: as in Qwen3's vocabulary
NEWLINE, NEWLINES = "\u010a", "\u010a\u010a"  # GPT-2's byte tokens for "\n" and "\n\n"


def write_scripted_chat(path: Path, template: str, *, eos: str, script: dict[str, str],
                        bos: str = "<｜begin▁of▁sentence｜>", control_markers: bool = False) -> Path:
    """A tiny llama whose next token depends only on the current one, as `script` says (token
    text -> next token text; any other token is followed by `eos`), carrying `template`.

    How: its one layer adds nothing (zero output projections), so the last hidden state is the
    current token's embedding; each scripted token has its own one-hot embedding, and the output
    row of its successor points along it (a logit of 40 against 0 for every other token). So a
    greedy, or even a sampled, reply follows the script exactly, which is what tests of thinking
    need: a random tiny model never writes `<think>` on its own. The vocabulary is GPT-2's byte
    alphabet (any text tokenizes), a merged "\\n\\n", the thinking markers (added tokens as in
    Qwen3's vocabulary, or control tokens with `control_markers`, which llama.cpp neither shows
    as text nor matches in plain text) and every family's control tokens.
    """
    n_embd, n_head, n_ff = 16, 2, 16
    tokens = _byte_alphabet() + [NEWLINES] + THINKING_MARKERS + THINKING_SPECIALS
    index = {text: i for i, text in enumerate(tokens)}
    if len(script) >= n_embd:
        raise ValueError(f"at most {n_embd - 1} scripted tokens")
    embeddings = np.zeros((len(tokens), n_embd), dtype=np.float32)
    embeddings[:, 0] = 1.0  # unscripted tokens: all along axis 0, which leads to eos
    output = np.zeros((len(tokens), n_embd), dtype=np.float32)
    output[index[eos], 0] = 10.0
    for axis, (current, following) in enumerate(script.items(), start=1):
        embeddings[index[current]] = 0.0
        embeddings[index[current], axis] = 1.0
        output[index[following], axis] = 10.0  # RMS norm scales the one-hot by 4: a logit of 40
    zeros = np.zeros
    w = {"token_embd.weight": embeddings, "output.weight": output, "output_norm.weight": np.ones(n_embd, np.float32),
         "blk.0.attn_norm.weight": np.ones(n_embd, np.float32), "blk.0.ffn_norm.weight": np.ones(n_embd, np.float32),
         "blk.0.attn_q.weight": zeros((n_embd, n_embd), np.float32),
         "blk.0.attn_k.weight": zeros((n_embd, n_embd), np.float32),
         "blk.0.attn_v.weight": zeros((n_embd, n_embd), np.float32),
         "blk.0.attn_output.weight": zeros((n_embd, n_embd), np.float32),
         "blk.0.ffn_gate.weight": zeros((n_ff, n_embd), np.float32),
         "blk.0.ffn_up.weight": zeros((n_ff, n_embd), np.float32),
         "blk.0.ffn_down.weight": zeros((n_embd, n_ff), np.float32)}
    types = ([gguf.TokenType.NORMAL] * (len(tokens) - len(THINKING_MARKERS) - len(THINKING_SPECIALS))
             + [gguf.TokenType.CONTROL if control_markers else gguf.TokenType.USER_DEFINED] * len(THINKING_MARKERS)
             + [gguf.TokenType.CONTROL] * len(THINKING_SPECIALS))

    def configure(writer: gguf.GGUFWriter) -> None:
        writer.add_context_length(4096)  # SmolLM3's own system prompt is ~1,500 byte tokens
        writer.add_embedding_length(n_embd)
        writer.add_feed_forward_length(n_ff)
        writer.add_block_count(1)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head)
        writer.add_rope_dimension_count(n_embd // n_head)
        writer.add_layer_norm_rms_eps(1e-6)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges([f"{NEWLINE} {NEWLINE}"])
        writer.add_bos_token_id(index[bos])
        writer.add_eos_token_id(index[eos])
        writer.add_add_bos_token(False)
        writer.add_chat_template(template)

    _write(path, "llama", configure, w)
    return path
