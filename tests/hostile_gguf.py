"""A factory of hostile GGUF files, each made from the real SmolLM2 GGUF by one precise change.

Every factory function takes the real file and a folder, writes one file there and returns a
`Hostile`: its path, what `check_gguf` must do with it, and (for template payloads) the marker
file that would exist if template code ever ran. `ALL` lists them all, for the tests that feed
every one through the checker and through the engine process.

The metadata is re-serialised here by an independent little GGUF writer (not by the code under
test): the real file's entries are copied byte for byte except the ones a case changes, and its
tensor table and tensor data are copied unchanged — or, with `weights=False`, the data region is
left as a sparse hole of the same size, for tests that never load the weights.
"""

from __future__ import annotations

import functools
import random
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slmchat.core.errors import (
    ModelFileDamaged,
    ModelFileError,
    NotAGGUF,
    UnsupportedModel,
)

# GGUF value types
UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64 = 4, 5, 6, 7, 8, 9, 10
_FIXED_SIZE = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
GGML_I32 = 26


@dataclass(frozen=True)
class Hostile:
    """One hostile file and the behaviour expected of the app."""

    name: str
    path: Path
    error: type[ModelFileError] | None  # what check_gguf raises; None: the file is accepted
    template_refused: bool = False  # accepted, but its chat template is refused (completion only)
    marker: Path | None = None  # created only if template code ever ran
    notes: str = ""


# --- reading the source file (independently of slmchat.core.gguf.check) --------------------
@dataclass
class _Source:
    version: int
    kvs: list[tuple[str, bytes]]  # key, raw value (type + payload)
    tensor_infos: list[list]  # [name, dims, type, offset]
    alignment: int
    data_start: int
    data_size: int
    offsets: dict[str, int] = field(default_factory=dict)  # byte offsets of interesting spots


def _u32(b: bytes, p: int) -> int:
    return struct.unpack_from("<I", b, p)[0]


def _u64(b: bytes, p: int) -> int:
    return struct.unpack_from("<Q", b, p)[0]


def _skip_value(b: bytes, p: int, vtype: int) -> int:
    if vtype in _FIXED_SIZE:
        return p + _FIXED_SIZE[vtype]
    if vtype == STRING:
        return p + 8 + _u64(b, p)
    item_type, count = _u32(b, p), _u64(b, p + 4)
    p += 12
    if item_type in _FIXED_SIZE:
        return p + count * _FIXED_SIZE[item_type]
    for _ in range(count):
        p = _skip_value(b, p, item_type)
    return p


@functools.lru_cache(maxsize=4)
def _read_source(path: Path) -> _Source:
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(min(size, 16 << 20))  # metadata and tensor table of SmolLM2 fit easily
    assert head[:4] == b"GGUF"
    version, n_tensors, n_kv = _u32(head, 4), _u64(head, 8), _u64(head, 16)
    p = 24
    kvs, offsets = [], {"kv_count": 16}
    for _ in range(n_kv):
        key_len = _u64(head, p)
        key = head[p + 8 : p + 8 + key_len].decode()
        offsets[key] = p
        p += 8 + key_len
        start = p
        p = _skip_value(head, p + 4, _u32(head, p))
        kvs.append((key, head[start:p]))
    offsets["tensor_infos"] = p
    infos = []
    for _ in range(n_tensors):
        name_len = _u64(head, p)
        name = head[p + 8 : p + 8 + name_len].decode()
        p += 8 + name_len
        n_dims = _u32(head, p)
        dims = [_u64(head, p + 4 + 8 * i) for i in range(n_dims)]
        p += 4 + 8 * n_dims
        infos.append([name, dims, _u32(head, p), _u64(head, p + 4)])
        p += 12
    alignment = 32
    for key, raw in kvs:
        if key == "general.alignment":
            alignment = _u32(raw, 4)
    data_start = -(-p // alignment) * alignment
    return _Source(version, kvs, infos, alignment, data_start, size - data_start, offsets)


# --- writing ------------------------------------------------------------------------------
def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def value(vtype: int, v: object) -> bytes:
    """The raw bytes of a typed GGUF value (scalar or string)."""
    if vtype == STRING:
        return struct.pack("<I", STRING) + _string(v)  # type: ignore[arg-type]
    fmt = {UINT32: "<I", INT32: "<i", FLOAT32: "<f", BOOL: "<?", UINT64: "<Q"}[vtype]
    return struct.pack("<I", vtype) + struct.pack(fmt, v)


def string_array(items: list[bytes]) -> bytes:
    return struct.pack("<IIQ", ARRAY, STRING, len(items)) + b"".join(_string(t) for t in items)


def token_list(source: Path) -> list[bytes]:
    """The real vocabulary of `source`, as raw bytes."""
    raw = dict(_read_source(source).kvs)["tokenizer.ggml.tokens"]
    count, p, out = _u64(raw, 8), 16, []
    for _ in range(count):
        n = _u64(raw, p)
        out.append(raw[p + 8 : p + 8 + n])
        p += 8 + n
    return out


def rewrite(
    source: Path,
    dest: Path,
    *,
    set_kv: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    tensor_types: dict[str, int] | None = None,
    weights: bool = True,
) -> Path:
    """Write `source` with some metadata entries replaced, added or dropped, tensors retyped."""
    src = _read_source(source)
    set_kv = dict(set_kv or {})
    kvs = [(k, set_kv.pop(k, raw)) for k, raw in src.kvs if k not in drop] + list(set_kv.items())
    out = bytearray(b"GGUF" + struct.pack("<IQQ", src.version, len(src.tensor_infos), len(kvs)))
    for key, raw in kvs:
        out += _string(key) + raw
    for name, dims, ttype, offset in src.tensor_infos:
        ttype = (tensor_types or {}).get(name, ttype)
        out += _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, offset)
    out += b"\0" * (-len(out) % src.alignment)
    with dest.open("wb") as f:
        f.write(out)
        if weights:
            with source.open("rb") as s:
                s.seek(src.data_start)
                while chunk := s.read(8 << 20):
                    f.write(chunk)
        else:
            f.truncate(len(out) + src.data_size)  # a sparse hole: same size, no disk used
    return dest


def _copy_with(source: Path, dest: Path, edit: Callable[[bytearray, _Source], bytearray]) -> Path:
    """Byte-level damage: the real file's bytes, edited."""
    data = bytearray(source.read_bytes())
    dest.write_bytes(edit(data, _read_source(source)))
    return dest


# --- the cases ----------------------------------------------------------------------------
Factory = Callable[[Path, Path, bool], Hostile]
ALL: list[Factory] = []


def case(fn: Factory) -> Factory:
    ALL.append(fn)
    return fn


def _damaged(name: str, path: Path, notes: str = "") -> Hostile:
    return Hostile(name, path, ModelFileDamaged, notes=notes)


# container damage
@case
def truncated_in_header(src: Path, out: Path, weights: bool = True) -> Hostile:
    return _damaged("truncated_in_header", _copy_with(src, out / "trunc-header.gguf", lambda d, s: d[:20]))


@case
def truncated_in_metadata(src: Path, out: Path, weights: bool = True) -> Hostile:
    def cut(d: bytearray, s: _Source) -> bytearray:
        return d[: s.offsets["tokenizer.ggml.tokens"] + 5000]

    return _damaged("truncated_in_metadata", _copy_with(src, out / "trunc-meta.gguf", cut))


@case
def truncated_in_tensor_table(src: Path, out: Path, weights: bool = True) -> Hostile:
    def cut(d: bytearray, s: _Source) -> bytearray:
        return d[: s.offsets["tensor_infos"] + 1000]

    return _damaged("truncated_in_tensor_table", _copy_with(src, out / "trunc-tensors.gguf", cut))


@case
def truncated_in_data(src: Path, out: Path, weights: bool = True) -> Hostile:
    return _damaged("truncated_in_data", _copy_with(src, out / "trunc-data.gguf", lambda d, s: d[: len(d) // 2]))


@case
def random_bytes(src: Path, out: Path, weights: bool = True) -> Hostile:
    path = out / "random.gguf"
    path.write_bytes(random.Random(10).randbytes(1 << 20))
    return Hostile("random_bytes", path, NotAGGUF)


@case
def flipped_magic(src: Path, out: Path, weights: bool = True) -> Hostile:
    def flip(d: bytearray, s: _Source) -> bytearray:
        d[1] ^= 0xFF
        return d

    return Hostile("flipped_magic", _copy_with(src, out / "flipped-magic.gguf", flip), NotAGGUF)


@case
def flipped_kv_count(src: Path, out: Path, weights: bool = True) -> Hostile:
    """A flipped high byte of the metadata count: 2**56 entries claimed."""

    def flip(d: bytearray, s: _Source) -> bytearray:
        d[s.offsets["kv_count"] + 7] ^= 0x01
        return d

    return _damaged("flipped_kv_count", _copy_with(src, out / "flipped-count.gguf", flip))


@case
def huge_array_count(src: Path, out: Path, weights: bool = True) -> Hostile:
    def grow(d: bytearray, s: _Source) -> bytearray:
        p = s.offsets["tokenizer.ggml.tokens"] + 8 + len("tokenizer.ggml.tokens") + 8
        d[p : p + 8] = struct.pack("<Q", 1 << 40)
        return d

    return _damaged("huge_array_count", _copy_with(src, out / "huge-array.gguf", grow))


@case
def huge_string_length(src: Path, out: Path, weights: bool = True) -> Hostile:
    def grow(d: bytearray, s: _Source) -> bytearray:
        p = s.offsets["general.name"] + 8 + len("general.name") + 4
        d[p : p + 8] = struct.pack("<Q", (1 << 62) + 5)
        return d

    return _damaged("huge_string_length", _copy_with(src, out / "huge-string.gguf", grow))


@case
def bad_tensor_offset(src: Path, out: Path, weights: bool = True) -> Hostile:
    def shift(d: bytearray, s: _Source) -> bytearray:
        name = s.tensor_infos[1][0]
        p = s.offsets["tensor_infos"]
        p = d.index(struct.pack("<Q", len(name)) + name.encode(), p) + 8 + len(name)
        n_dims = _u32(d, p)
        p += 4 + 8 * n_dims + 4
        d[p : p + 8] = struct.pack("<Q", 1 << 50)
        return d

    return _damaged("bad_tensor_offset", _copy_with(src, out / "bad-offset.gguf", shift))


# hyper-parameters that abort llama.cpp
def _hparam(name: str, file: str, kv: dict[str, bytes], notes: str = "") -> Factory:
    def make(src: Path, out: Path, weights: bool = True) -> Hostile:
        return _damaged(name, rewrite(src, out / file, set_kv=kv, weights=weights), notes)

    make.__name__ = name
    return case(make)


block_count_zero = _hparam("block_count_zero", "blocks-0.gguf", {"llama.block_count": value(UINT32, 0)})
block_count_600 = _hparam("block_count_600", "blocks-600.gguf", {"llama.block_count": value(UINT32, 600)})
unknown_rope_scaling = _hparam(
    "unknown_rope_scaling", "rope.gguf", {"llama.rope.scaling.type": value(STRING, "wobbly")}
)
experts_without_used = _hparam(
    "experts_without_used", "experts.gguf", {"llama.expert_count": value(UINT32, 8)}
)
nan_norm_epsilon = _hparam(
    "nan_norm_epsilon", "eps-nan.gguf", {"llama.attention.layer_norm_rms_epsilon": value(FLOAT32, float("nan"))}
)
negative_norm_epsilon = _hparam(
    "negative_norm_epsilon", "eps-neg.gguf", {"llama.attention.layer_norm_rms_epsilon": value(FLOAT32, -1e-5)}
)
absurd_context_length = _hparam(
    "absurd_context_length", "ctx-absurd.gguf", {"llama.context_length": value(UINT32, 0xFFFFFFFF)}
)


@case
def unknown_architecture(src: Path, out: Path, weights: bool = True) -> Hostile:
    path = rewrite(src, out / "arch.gguf", set_kv={"general.architecture": value(STRING, "frobnicator")}, weights=weights)
    return Hostile("unknown_architecture", path, UnsupportedModel)


@case
def norm_tensor_int32(src: Path, out: Path, weights: bool = True) -> Hostile:
    """F32 and I32 are both 4 bytes, so only the declared type changes."""
    path = rewrite(src, out / "norm-i32.gguf", tensor_types={"blk.0.attn_norm.weight": GGML_I32}, weights=weights)
    return _damaged("norm_tensor_int32", path)


# vocabularies
@case
def duplicate_token(src: Path, out: Path, weights: bool = True) -> Hostile:
    tokens = token_list(src)
    tokens[1000] = tokens[1001]
    path = rewrite(src, out / "dup-token.gguf", set_kv={"tokenizer.ggml.tokens": string_array(tokens)}, weights=weights)
    return _damaged("duplicate_token", path)


@case
def sentencepiece_without_byte_tokens(src: Path, out: Path, weights: bool = True) -> Hostile:
    """SmolLM2's byte-level BPE vocabulary declared SentencePiece: no `<0xXX>` tokens, and no
    single-byte token for bytes >= 0x80, so typing "é" makes llama_tokenize throw and abort."""
    tokens = set(token_list(src))
    assert b"<0xC3>" not in tokens and b"\xc3" not in tokens
    path = rewrite(
        src,
        out / "spm-no-bytes.gguf",
        set_kv={"tokenizer.ggml.model": value(STRING, "llama")},
        weights=weights,
    )
    return _damaged("sentencepiece_without_byte_tokens", path, notes="aborts at the first chat with non-ASCII text")


# chat templates: accepted files, refused templates
def _template_case(name: str, key: str, make_text: Callable[[Path | None], str], ssti: bool = False) -> Factory:
    """A file whose template `key` is `make_text(marker)`; SSTI payloads get a unique marker file."""

    def make(src: Path, out: Path, weights: bool = True) -> Hostile:
        marker = out / f"PWNED-{name}-{uuid.uuid4().hex}" if ssti else None
        text = make_text(marker)
        path = rewrite(src, out / f"{name}.gguf", set_kv={key: value(STRING, text)}, weights=weights)
        return Hostile(name, path, None, template_refused=True, marker=marker)

    make.__name__ = name
    return case(make)


DEFAULT = "tokenizer.chat_template"
pow_bomb = _template_case("pow_bomb", DEFAULT, lambda _: "{{ 9**(9**9) }}")
pow_bomb_unused_key = _template_case("pow_bomb_unused_key", DEFAULT + ".foo", lambda _: "{{ 9**(9**9) }}")
nested_range = _template_case(
    "nested_range",
    DEFAULT,
    lambda _: "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
)
string_doubling = _template_case(
    "string_doubling",
    DEFAULT,
    lambda _: "{% set ns = namespace(s='xx') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
)
ssti_subclasses = _template_case(
    "ssti_subclasses",
    DEFAULT,
    lambda m: "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    f"{{{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__['os'].system('touch {m}') }}}}",
    ssti=True,
)
ssti_cycler = _template_case(
    "ssti_cycler", DEFAULT, lambda m: f"{{{{ cycler.__init__.__globals__.os.popen('touch {m}').read() }}}}", ssti=True
)
unparsable_template = _template_case("unparsable_template", DEFAULT, lambda _: "{% for m in messages %}{{ m }")


@case
def invalid_utf8_name(src: Path, out: Path, weights: bool = True) -> Hostile:
    path = rewrite(src, out / "bad-utf8.gguf", set_kv={"general.name": value(STRING, b"Smol\xff\xfeLM")}, weights=weights)
    return _damaged("invalid_utf8_name", path, notes="llama-cpp-python would silently drop all metadata")


# harmless but hostile-looking: these must work, safely
def _name_case(name: str, display: str) -> Factory:
    def make(src: Path, out: Path, weights: bool = True) -> Hostile:
        path = rewrite(src, out / f"{name}.gguf", set_kv={"general.name": value(STRING, display)}, weights=weights)
        return Hostile(name, path, None)

    make.__name__ = name
    return case(make)


ansi_name = _name_case("ansi_name", "\x1b[2J\x1b[31mEvil\x1b[0m \x1b]0;pwned\x07Model")
bidi_name = _name_case("bidi_name", "Smol\u202eLM\u202c \u2066gpj.exe\u2069 \u200bzero")
newline_name = _name_case("newline_name", "Smol\nLM\r\n\tInstruct\x00\x08")
long_name = _name_case("long_name", "Smol" * 2500)


@case
def huge_context_length(src: Path, out: Path, weights: bool = True) -> Hostile:
    """10M tokens is a real value (Llama 4 Scout): accepted; the engine must pick n_ctx itself."""
    path = rewrite(src, out / "ctx-10m.gguf", set_kv={"llama.context_length": value(UINT32, 10_000_000)}, weights=weights)
    return Hostile("huge_context_length", path, None)


def build_all(source: Path, out: Path, weights: bool = True) -> list[Hostile]:
    """Every case, written into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    return [make(source, out, weights) for make in ALL]
