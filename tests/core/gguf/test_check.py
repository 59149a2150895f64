"""The GGUF check: real models read correctly, every hostile file refused (or defused) quickly."""

from __future__ import annotations

import dataclasses
import time
import unicodedata
from pathlib import Path

import hostile_gguf
import pytest
from hostile_gguf import Hostile

from slmchat.core.errors import (
    ModelFileDamaged,
    ModelFileMissing,
    NotAGGUF,
    UnsafeChatTemplate,
)
from slmchat.core.gguf.check import (
    GGUFInfo,
    HeaderIncomplete,
    check_chat_template,
    check_gguf,
    read_gguf,
    read_gguf_header,
)

# Generous: the checks take milliseconds; only a hang or a runaway loop would pass this.
BOUND_S = 10.0


def timed_check(path: Path) -> GGUFInfo:
    start = time.monotonic()
    try:
        return check_gguf(path)
    finally:
        assert time.monotonic() - start < BOUND_S


# --- every hostile file --------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.mark.parametrize("make", hostile_gguf.ALL, ids=[f.__name__ for f in hostile_gguf.ALL])
def test_each_hostile_file_gets_its_typed_outcome(make, smollm2_path: Path, hostile_dir: Path) -> None:
    hostile: Hostile = make(smollm2_path, hostile_dir, weights=False)
    if hostile.error is not None:
        with pytest.raises(hostile.error) as caught:
            timed_check(hostile.path)
        assert type(caught.value) is hostile.error
        assert caught.value.detail, "the technical reason goes to the log"
        assert not any(unicodedata.category(ch) == "Cc" for ch in str(caught.value))
        return
    info = timed_check(hostile.path)
    assert info.is_chat is not hostile.template_refused
    if hostile.template_refused:
        assert info.chat_template is None
        assert info.template_problem
    if hostile.marker is not None:
        assert not hostile.marker.exists(), "template code ran"


def test_a_template_bomb_in_an_unused_key_still_refuses_the_templates(smollm2_path: Path, tmp_path: Path) -> None:
    """llama-cpp-python compiles every tokenizer.chat_template.* key, used or not."""
    info = check_gguf(hostile_gguf.pow_bomb_unused_key(smollm2_path, tmp_path, weights=False).path)
    assert "tokenizer.chat_template.foo" in info.template_problem
    assert not info.is_chat


@pytest.mark.parametrize("make", [hostile_gguf.ansi_name, hostile_gguf.bidi_name,
                                  hostile_gguf.newline_name, hostile_gguf.long_name])
def test_hostile_names_become_plain_text(make, smollm2_path: Path, tmp_path: Path) -> None:
    hostile = make(smollm2_path, tmp_path, weights=False)
    name = check_gguf(hostile.path).name
    assert name and len(name) <= 200
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name)
    assert "[31m" not in name and "pwned" not in name


def test_a_huge_but_real_context_length_is_reported_not_refused(smollm2_path: Path, tmp_path: Path) -> None:
    info = check_gguf(hostile_gguf.huge_context_length(smollm2_path, tmp_path, weights=False).path)
    assert info.context_length == 10_000_000


def test_the_sparse_copies_are_faithful_apart_from_their_change(smollm2_path: Path, tmp_path: Path) -> None:
    """The factory's writer itself: an unchanged rewrite reads exactly like the original."""
    copy = hostile_gguf.rewrite(smollm2_path, tmp_path / "same.gguf", weights=True)
    assert copy.read_bytes() == smollm2_path.read_bytes()


# --- files that are not models --------------------------------------------------------------
def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing):
        check_gguf(tmp_path / "nope.gguf")


def test_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotAGGUF):
        check_gguf(tmp_path)


def test_an_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.gguf").touch()
    with pytest.raises(ModelFileDamaged, match="ends early"):
        check_gguf(tmp_path / "empty.gguf")


def test_a_truncated_file_says_what_to_do(smollm2_path: Path, tmp_path: Path) -> None:
    hostile = hostile_gguf.truncated_in_data(smollm2_path, tmp_path)
    with pytest.raises(ModelFileDamaged) as caught:
        read_gguf(hostile.path)
    assert str(caught.value) == "The file ends early — it was probably cut off while downloading. Download it again."
    assert "tensor data ends at" in caught.value.detail


# --- the real models, against the gguf package's reader as an independent reference ----------
def reference(path: Path) -> dict:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    fields = {name: field.contents() for name, field in reader.fields.items()
              if name != "tokenizer.ggml.merges"}
    return {
        "fields": fields,
        "parameters": sum(int(t.n_elements) for t in reader.tensors),
        "tensor_bytes": sum(int(t.n_bytes) for t in reader.tensors),
    }


@pytest.fixture(scope="session")
def smollm2_reference(smollm2_path: Path) -> dict:
    return reference(smollm2_path)


def assert_facts_match(info: GGUFInfo, ref: dict) -> None:
    f = ref["fields"]
    arch = f["general.architecture"]
    assert info.architecture == arch
    assert info.context_length == f[f"{arch}.context_length"]
    assert info.block_count == f[f"{arch}.block_count"]
    assert info.embedding_length == f[f"{arch}.embedding_length"]
    assert info.head_count == f[f"{arch}.attention.head_count"]
    assert info.head_count_kv == f[f"{arch}.attention.head_count_kv"]
    assert info.parameter_count == ref["parameters"]
    assert info.tensor_bytes == ref["tensor_bytes"]
    assert info.vocab_size == len(f["tokenizer.ggml.tokens"])
    assert info.tokenizer_model == f["tokenizer.ggml.model"]
    assert info.bos_token_id == f["tokenizer.ggml.bos_token_id"]
    assert info.eos_token_id == f["tokenizer.ggml.eos_token_id"]
    assert info.chat_template == f.get("tokenizer.chat_template")
    assert info.version == f["GGUF.version"]


@pytest.mark.slow
def test_smollm2_facts(smollm2_path: Path, smollm2_reference: dict) -> None:
    info = check_gguf(smollm2_path)
    assert_facts_match(info, smollm2_reference)
    assert info.quantization == "Q4_1"  # as its file name says
    assert info.key_length == info.value_length == 576 // 9
    assert info.is_chat and info.template_problem is None
    assert info.file_size == smollm2_path.stat().st_size
    assert info.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"
    assert info.metadata["llama.rope.freq_base"] == 100000.0
    assert not any(isinstance(v, (tuple, list)) for v in info.metadata.values())


@pytest.mark.slow
def test_gemma_base_model_facts(gemma_path: Path) -> None:
    """Gemma 3 270M: a SentencePiece vocabulary with all its byte tokens, and no chat template."""
    info = check_gguf(gemma_path)
    assert_facts_match(info, reference(gemma_path))
    assert info.quantization == "Q4_K_M"  # as its file name says
    assert info.key_length == info.metadata["gemma3.attention.key_length"] == 256
    assert info.tokenizer_model == "llama"
    assert info.chat_template is None and not info.is_chat
    assert info.template_problem is None


# --- chat templates ----------------------------------------------------------------------
SAFE_TEMPLATES = [
    ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    ("{{ bos_token }}{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
     "{{ raise_exception('Conversation roles must alternate') }}{% endif %}{{ m.content | trim }}{% endfor %}"),
    "{% for m in messages %}{% for i in range(messages|length) %}{{ i }}{% endfor %}{% endfor %}",
    "{{ '=' * 20 }}{{ '  ' * indent }}{{ tools | tojson(indent=2) }}",
    ("{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}"
     "{% set ns.found = true %}{% break %}{% endif %}{% endfor %}{{ ns.found }}"),
    "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
    "{% set ns = namespace(text='') %}{% for m in messages %}{% set ns.text = ns.text ~ m.content %}{% endfor %}",
    "{{ strftime_now('%d %b %Y') }}{{ messages[-1]['content'][:100] }}",
    """{{ '{"maximum": 100000}' }}{{ '100% 12345 items' }}""",
    # tool-calling templates walk JSON schemas recursively, more than one self-call per macro
    ("{% macro render(schema, indent) %}{% for k, v in schema.properties | items %}{{ indent ~ k }}"
     "{% if v.properties %}{{ render(v, indent ~ '  ') }}{% endif %}"
     "{% if v['items'] %}{{ render(v['items'], indent + '  ') }}{% endif %}{% endfor %}{% endmacro %}"
     "{{ render(tools[0], '') }}"),
    ("{% for m in messages %}{% set c = m.content %}{% set c = c if c is string else c | tojson %}"
     "{{ c }}{% endfor %}"),
]


@pytest.mark.parametrize("template", SAFE_TEMPLATES)
def test_ordinary_templates_are_accepted(template: str) -> None:
    check_chat_template(template)


def test_the_real_smollm2_template_is_accepted(smollm2_path: Path) -> None:
    check_chat_template(read_gguf(smollm2_path).chat_template)


BOMBS = {
    "power": "{{ 9**(9**9) }}",
    "huge number": "{{ range(100000000)|list }}",
    "nested range": "{% for i in range(99999) %}{% for j in range(99999) %}.{% endfor %}{% endfor %}",
    "doubling": "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "doubling by set block": "{% set s = 'x' %}{% for i in range(64) %}{% set s %}{{ s }}{{ s }}{% endset %}{% endfor %}",
    "repetition": "{{ ('x' * 10000) * 10000 }}",
    "format width": "{{ '%0999999999d' % 1 }}",
    "str.format width": "{{ '{:>99999999}'.format(1) }}",
    "width filter": "{{ 'x' | center(99999999) }}",
    "dunder attribute": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "globals": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "dunder item": "{{ x['__class__'] }}",
    "attr filter": "{{ x | attr('__class__') }}",
    "computed attr": "{{ x | attr(name) }}",
    "lipsum": "{{ lipsum(n=100000) }}",
    "counting macro in a loop": "{% macro f(n) %}{% for i in [1, 2] %}{{ f(n - 1) }}{% endfor %}{% endmacro %}",
    "exponential macro": "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "looping macro in a loop": "{% macro m() %}{% for i in range(9999) %}.{% endfor %}{% endmacro %}"
    "{% for j in range(9999) %}{{ m() }}{% endfor %}",
    "recursive range loop": "{% for i in range(9) recursive %}{{ loop(range(9)) }}{% endfor %}",
    "too long": "x" * (2 << 20),
}


@pytest.mark.parametrize("template", BOMBS.values(), ids=BOMBS.keys())
def test_bombs_are_refused_without_running(template: str) -> None:
    start = time.monotonic()
    with pytest.raises(UnsafeChatTemplate) as caught:
        check_chat_template(template)
    assert time.monotonic() - start < BOUND_S
    assert caught.value.detail


def test_ssti_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    with pytest.raises(UnsafeChatTemplate):
        check_chat_template(f"{{{{ cycler.__init__.__globals__.os.popen('touch {marker}').read() }}}}")
    assert not marker.exists()


def test_a_template_with_syntax_errors_is_unusable_with_its_reason() -> None:
    with pytest.raises(UnsafeChatTemplate) as caught:
        check_chat_template("{% for m in messages %}{{ m }")
    assert str(caught.value) == "The model's chat template has errors and cannot be used."
    assert caught.value.detail.startswith("line 1:")


def test_deeply_nested_template_is_refused_not_a_crash() -> None:
    with pytest.raises(UnsafeChatTemplate):
        check_chat_template("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")


def test_parse_only_constant_folding_never_happens() -> None:
    """Jinja folds `9**(9**9)` while compiling; the check must refuse it without computing it."""
    start = time.monotonic()
    with pytest.raises(UnsafeChatTemplate):
        check_chat_template("{{ 9**(9**9) }}" * 1000)
    assert time.monotonic() - start < BOUND_S


# --- a file known only by its first bytes (a hub listing) ------------------------------------
@pytest.fixture(scope="module")
def smollm2_header(smollm2_path: Path) -> bytes:
    """SmolLM2's bytes up to its tensor data, found by the gguf package's reader (not ours)."""
    from gguf import GGUFReader

    return smollm2_path.read_bytes()[: GGUFReader(smollm2_path).data_offset]


def test_a_prefix_holding_the_whole_header_reads_like_the_whole_file(smollm2_path: Path, smollm2_header: bytes) -> None:
    info = read_gguf_header(smollm2_header, smollm2_path.stat().st_size, smollm2_path.name, check=True)
    whole = check_gguf(smollm2_path)
    assert info == dataclasses.replace(whole, path=Path(smollm2_path.name))


def test_a_prefix_cut_anywhere_in_the_header_asks_for_more_until_it_parses(
    smollm2_path: Path, smollm2_header: bytes
) -> None:
    data = smollm2_header
    size = smollm2_path.stat().st_size
    # One alignment step before the data, the tensor table is certainly not complete.
    with pytest.raises(HeaderIncomplete) as caught:
        read_gguf_header(data[: len(data) - 32], size, "m.gguf")
    assert caught.value.needed_bytes > len(data) - 32
    # Growing the prefix to at least what it asks for converges on the full header.
    have, steps = 10, 0
    while True:
        try:
            info = read_gguf_header(data[:have], size, "m.gguf")
            break
        except HeaderIncomplete as more:
            assert have < more.needed_bytes <= len(data)
            have, steps = min(len(data), max(more.needed_bytes, 2 * have)), steps + 1
    assert steps > 5 and info.tensor_bytes == check_gguf(smollm2_path).tensor_bytes


def test_a_header_whose_file_is_too_short_is_damaged_not_incomplete(smollm2_header: bytes) -> None:
    data = smollm2_header
    with pytest.raises(ModelFileDamaged, match="ends early"):
        read_gguf_header(data, len(data) + 1000, "m.gguf")  # the tensors cannot fit in this size
    with pytest.raises(ModelFileDamaged, match="ends early"):
        read_gguf_header(data[:5000], 5000, "m.gguf")  # the file itself ends inside the header
