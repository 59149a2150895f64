"""llama.cpp's T5 (through Seq2SeqTask, the path Translate and Summarize take) against an
independent numpy T5 (tests/t5_reference.py) on the tiny F32 flan-t5-shaped GGUF.

Tolerance: the weights are F32, so nothing is quantised; what differs is precision inside
llama.cpp. The decoder's self-attention keys and values live in an F16 KV cache (llama.cpp's
default cache type, as the app runs it) and ggml's GELU reads a float16 table; T5 does not
scale its attention scores, so on random weights the softmax is sharp and amplifies that
rounding. Measured: at most 0.039 against the float64 reference over logits spanning about
+-5, and 0.0105 when the reference rounds the cache and the GELU to float16 as llama.cpp does.
0.05 is above that; changing one weight by 1.0 (the last tests) moves the logits by more than
twice as much, and the wrong bucket direction or scaled scores by far more.
"""
from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
import pytest
import t5_reference as ref
import tiny_gguf

from slmchat.core.tasks.t5 import Seq2SeqKind, Seq2SeqTask, task_prompt

THREADS = 1
TOLERANCE = 0.05
PROMPTS = [task_prompt(Seq2SeqKind.TRANSLATE, "the house is small"),
           task_prompt(Seq2SeqKind.SUMMARIZE, "das haus ist klein. the house is small")]
STEPS = 5


@pytest.fixture(scope="module")
def t5_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gguf.write_t5(tmp_path_factory.mktemp("t5-reference") / "t5.gguf")


def weights_and_shape(path: Path) -> tuple[dict[str, np.ndarray], ref.T5Shape]:
    """The tensors as stored in the file (not as the writer meant them), and its hyper-parameters."""
    reader = gguf.GGUFReader(path)
    weights = {t.name: np.array(t.data, dtype=np.float64) for t in reader.tensors}
    assert {t.tensor_type for t in reader.tensors} == {gguf.GGMLQuantizationType.F32}

    def field(key: str) -> float:
        return reader.get_field(f"t5.{key}").contents()

    shape = ref.T5Shape(int(field("attention.head_count")), int(field("attention.relative_buckets_count")),
                        float(field("attention.layer_norm_rms_epsilon")))
    return weights, shape


def decoder_start(path: Path) -> int:
    """T5 decodes from this token (<pad>), as the file says."""
    return int(gguf.GGUFReader(path).get_field("t5.decoder_start_token_id").contents())


def llama_steps(task: Seq2SeqTask, prompt: str) -> list[tuple[list[int], np.ndarray]]:
    """(decoder input, llama.cpp's logits for its next token) at each of the first STEPS steps,
    each from a fresh `generate`, as the app runs it."""
    steps = []
    for n in range(1, STEPS + 1):
        result = task.generate(prompt, max_tokens=n)
        decoder_input = [decoder_start(task.path), *result.tokens][: result.generated]
        steps.append((decoder_input, np.array(task.last_scores(), dtype=np.float64)))
        if result.generated < n:  # ended early (</s>): no further steps to compare
            break
    return steps


def largest_difference(path: Path, weights: dict[str, np.ndarray], shape: ref.T5Shape) -> float:
    worst = 0.0
    with Seq2SeqTask(path, n_threads=THREADS) as task:
        for prompt in PROMPTS:
            encoded = ref.encode(weights, task.tokenize(prompt), shape)
            for decoder_input, got in llama_steps(task, prompt):
                expected = ref.decoder_logits(weights, encoded, decoder_input, shape)[-1]
                worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def test_the_tiny_t5_is_flan_t5_shaped_gated_and_untied(t5_path: Path) -> None:
    weights, shape = weights_and_shape(t5_path)
    assert "output.weight" in weights and "enc.blk.0.ffn_gate.weight" in weights
    assert shape.n_buckets == 8 and shape.n_head == 4


def test_llama_cpp_decoder_logits_match_the_numpy_t5_at_every_step(t5_path: Path) -> None:
    weights, shape = weights_and_shape(t5_path)
    with Seq2SeqTask(t5_path, n_threads=THREADS) as task:
        for prompt in PROMPTS:
            tokens = task.tokenize(prompt)
            encoded = ref.encode(weights, tokens, shape)
            steps = llama_steps(task, prompt)
            assert len(steps) >= 3
            for decoder_input, got in steps:
                expected = ref.decoder_logits(weights, encoded, decoder_input, shape)[-1]
                np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
                assert np.ptp(expected) > 1.0  # logits that differ, so the comparison means something
            result = task.generate(prompt, max_tokens=STEPS)
            start = decoder_start(t5_path)
            chosen = [int(np.argmax(ref.decoder_logits(weights, encoded, [start, *result.tokens[:i]], shape)[-1]))
                      for i in range(len(result.tokens))]
            assert list(result.tokens) == chosen  # greedy picks the reference's tokens


@pytest.mark.parametrize(("tensor", "index"), [
    ("enc.blk.0.attn_rel_b.weight", (3, 1)),  # a bidirectional bucket of the encoder
    ("dec.blk.0.attn_rel_b.weight", (1, 2)),  # a causal bucket of the decoder
    ("dec.blk.1.cross_attn_v.weight", (5, 7)),
    ("enc.blk.1.ffn_gate.weight", (10, 3)),
    ("dec.output_norm.weight", (4,)),
    ("output.weight", (12, 9)),
])
def test_the_comparison_notices_one_weight_changed_in_the_reference(
    t5_path: Path, tensor: str, index: tuple[int, ...]
) -> None:
    weights, shape = weights_and_shape(t5_path)
    weights[tensor][index] += 1.0
    assert largest_difference(t5_path, weights, shape) > 2 * TOLERANCE


def test_the_comparison_notices_scaled_attention_scores(t5_path: Path) -> None:
    """T5 does not divide its attention scores by sqrt(head size); a reference that does is wrong."""
    weights, shape = weights_and_shape(t5_path)
    head = weights["enc.blk.0.attn_q.weight"].shape[0] // shape.n_head
    for name in [n for n in weights if n.endswith(("attn_q.weight", "cross_attn_q.weight"))]:
        weights[name] = weights[name] / np.sqrt(head)  # q/sqrt(d) . k: what scaled attention computes
    assert largest_difference(t5_path, weights, shape) > 2 * TOLERANCE


# --- the original T5's tied lm_head ----------------------------------------------------------------
def without_lm_head(source: Path, target: Path) -> Path:
    """`source` with no output tensor: the original T5's (t5-small) lm_head, tied to the embedding."""
    reader = gguf.GGUFReader(source)
    writer = gguf.GGUFWriter(str(target), "t5")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type)
    for tensor in reader.tensors:
        if tensor.name != "output.weight":
            writer.add_tensor(tensor.name, np.array(tensor.data, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return target


def test_a_tied_t5_greedy_picks_the_reference_tokens_though_llama_cpp_skips_the_rescale(
    t5_path: Path, tmp_path: Path
) -> None:
    """T5 scales the decoder output by d_model**-0.5 before a tied lm_head; llama.cpp's graph does
    not, so its logits are the reference's times sqrt(d_model). Greedy decoding, all that
    Seq2SeqTask does, is blind to a positive factor: the tokens are the reference's."""
    path = without_lm_head(t5_path, tmp_path / "t5-tied.gguf")
    weights, shape = weights_and_shape(path)
    assert "output.weight" not in weights
    d_model = weights["token_embd.weight"].shape[1]
    with Seq2SeqTask(path, n_threads=THREADS) as task:
        for prompt in PROMPTS:
            encoded = ref.encode(weights, task.tokenize(prompt), shape)
            for decoder_input, got in llama_steps(task, prompt):
                expected = ref.decoder_logits(weights, encoded, decoder_input, shape)[-1]
                np.testing.assert_allclose(got, expected * math.sqrt(d_model), atol=TOLERANCE, rtol=0)
                assert int(np.argmax(got)) == int(np.argmax(expected))
