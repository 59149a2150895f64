"""The app's one GGUF reader: a bounded, pure-Python parse and validation of a model file.

Run before a file is offered (import, download, catalog) and before the engine loads it. It reads
the header, every metadata entry and the tensor table (never the tensor data), checking each count
and length against the bytes left in the file and against hard caps, so a hostile file costs
milliseconds, not gigabytes. `check_gguf` then refuses what measurably crashes or hangs llama.cpp
0.3.36 (docs/ARCHITECTURE.md). It gives the friendly message; the engine process is the safety net for
whatever no validator can foresee. It never imports llama_cpp.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from slmchat.core.errors import (
    ModelFileDamaged,
    ModelFileMissing,
    NotAGGUF,
    UnsafeChatTemplate,
    UnsupportedModel,
)
from slmchat.core.gguf.tables import (
    GGML_TYPES,
    LLAMA_FTYPES,
    SUPPORTED_ARCHITECTURES,
    TOKENIZER_MODELS,
)
from slmchat.core.gguf.template_check import check_chat_template
from slmchat.core.plaintext import plain_text

__all__ = ["GGUFInfo", "HeaderIncomplete", "check_chat_template", "check_gguf", "read_gguf", "read_gguf_header"]

Scalar = str | int | float | bool

# --- hard caps: far above any real model, far below what could hurt -----------------------
MAX_KV = 1 << 16  # metadata entries (real models: ~30-60)
MAX_TENSORS = 1 << 16  # tensor infos (large MoE models: a few thousand)
MAX_KEY_BYTES = 1 << 12
MAX_STRING_BYTES = 1 << 24  # one string value (chat templates are at most ~100 KB)
MAX_ARRAY_ITEMS = 1 << 22  # the largest arrays are merge lists of ~500k entries
MAX_STRING_ITEMS = 1 << 23  # strings in all arrays together: each is stepped over in Python
MAX_VOCAB = 1 << 21  # vocabularies are up to ~260k tokens; each is kept in memory for the checks
MAX_TENSOR_NAME = 63  # llama.cpp's GGML_MAX_NAME - 1
MAX_DIMS = 4
MAX_LAYERS = 512  # LLAMA_MAX_LAYERS: more aborts llama.cpp
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
MAX_CONTEXT = 1 << 24  # 16M tokens; Llama 4 Scout declares 10M
METADATA_STRING_SHOWN = 4096  # strings kept in GGUFInfo.metadata are cut to this
SMALL_ARRAY = 4096  # numeric/string arrays kept as tuples; longer ones are only skipped

GGUF_MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32

_T_STRING, _T_ARRAY = 8, 9
_SCALAR_FORMATS = {  # GGUF value type -> struct format (little endian)
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_SCALAR_STRUCTS = {t: struct.Struct(f) for t, f in _SCALAR_FORMATS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")

_TRUNCATED = "The file ends early — it was probably cut off while downloading. Download it again."
_CORRUPT = "The model file is damaged and cannot be used. Download it again."
_INVALID = "The model file contains settings that would crash the model runner, so it cannot be used."
_NORM_TYPES = frozenset({"F32", "F16", "BF16"})


@dataclass(frozen=True)
class _Array:
    """An array value not materialised: only its element type and length are kept."""

    item_type: int
    count: int


@dataclass(frozen=True)
class GGUFInfo:
    """What the app knows about a GGUF file without loading it."""

    path: Path
    file_size: int
    version: int
    architecture: str
    name: str  # plain text, safe to show
    parameter_count: int  # sum of tensor element counts
    context_length: int  # trained context
    block_count: int
    embedding_length: int
    head_count: int  # largest per-layer value where the file gives one per layer
    head_count_kv: int
    key_length: int  # per-head K dimension
    value_length: int  # per-head V dimension
    quantization: str  # "Q4_K_M" from general.file_type, else the dominant tensor type
    tensor_bytes: int
    chat_template: str | None  # the default template, None when absent or refused
    template_problem: str | None  # why a template is refused or unusable; None if fine
    tokenizer_model: str
    vocab_size: int
    bos_token_id: int | None
    eos_token_id: int | None
    metadata: Mapping[str, Scalar]  # scalar entries only, strings cut to 4096 characters

    @property
    def is_chat(self) -> bool:
        """True when the model has a chat template that passed vetting."""
        return self.chat_template is not None and self.template_problem is None


@dataclass
class _Parsed:
    """The raw result of the container parse, shared by read_gguf and check_gguf."""

    version: int
    values: dict[str, Scalar | tuple | _Array]
    tokens: list[bytes] | None
    tensors: list[tuple[str, tuple[int, ...], str, int]]  # name, dims, ggml type name, bytes
    file_size: int


class _Truncated(Exception):
    pass


class HeaderIncomplete(Exception):
    """The prefix given to `read_gguf_header` ends before the tensor table does: fetch more.

    Not a user-facing error (the file is not known to be bad): `needed_bytes` is a lower bound on
    the prefix length the next attempt needs.
    """

    def __init__(self, needed_bytes: int) -> None:
        super().__init__(f"the GGUF header needs at least {needed_bytes} bytes")
        self.needed_bytes = needed_bytes


def _damaged(what: str, *, message: str = _CORRUPT) -> ModelFileDamaged:
    return ModelFileDamaged(message, detail=what)


class _Cursor:
    """Bounded reads over the mapped file (or a prefix of it); every length is checked before it is used.

    `size` is the whole file's size and decides what is truncated; `available` is how much of it
    `buf` holds: a read past it, but inside the file, asks for a longer prefix.
    """

    def __init__(self, buf: mmap.mmap | bytes, size: int, available: int | None = None) -> None:
        self.buf = buf
        self.size = size
        self.available = size if available is None else min(available, size)
        self.pos = 0
        self.string_items_left = MAX_STRING_ITEMS

    def need(self, n: int) -> None:
        if n > self.size - self.pos:
            raise _Truncated(f"needs {n} bytes at offset {self.pos}, file has {self.size}")
        if n > self.available - self.pos:
            raise HeaderIncomplete(self.pos + n)

    def scalar(self, value_type: int) -> Scalar:
        st = _SCALAR_STRUCTS[value_type]
        self.need(st.size)
        (value,) = st.unpack_from(self.buf, self.pos)
        self.pos += st.size
        return value

    def u32(self) -> int:
        return self.scalar(4)  # type: ignore[return-value]

    def u64(self) -> int:
        return self.scalar(10)  # type: ignore[return-value]

    def raw_string(self, cap: int, what: str) -> bytes:
        n = self.u64()
        if n > cap:
            raise _damaged(f"{what}: string of {n} bytes exceeds the cap of {cap}")
        self.need(n)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def text(self, cap: int, what: str) -> str:
        data = self.raw_string(cap, what)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            # llama-cpp-python drops ALL metadata (chat template included) on one such string.
            raise _damaged(f"{what}: invalid UTF-8 ({exc})") from None

    def string_array(self, count: int, keep: bool) -> list[bytes] | None:
        """Read (or only step over) `count` length-prefixed strings, as fast as Python allows."""
        self.need(8 * count)  # every string has at least its 8-byte length
        self.string_items_left -= count
        if self.string_items_left < 0:
            raise _damaged(f"more than {MAX_STRING_ITEMS} strings in arrays")
        buf, pos, size, available = self.buf, self.pos, self.size, self.available
        unpack = _U64.unpack_from
        out: list[bytes] = []
        append = out.append
        try:
            for _ in range(count):
                if pos + 8 > available:
                    raise struct.error
                (n,) = unpack(buf, pos)
                pos += 8
                if n > MAX_STRING_BYTES or n > size - pos:
                    raise _Truncated(f"array string of {n} bytes at offset {pos}")
                if n > available - pos:
                    raise HeaderIncomplete(pos + n)
                if keep:
                    append(buf[pos : pos + n])
                pos += n
        except struct.error:
            if pos + 8 > size:
                raise _Truncated(f"array string length at offset {pos}") from None
            raise HeaderIncomplete(pos + 8) from None
        self.pos = pos
        return out if keep else None


def _read_value(cur: _Cursor, key: str, value_type: int) -> Scalar | tuple | _Array | list[bytes]:
    if value_type in _SCALAR_STRUCTS:
        return cur.scalar(value_type)
    if value_type == _T_STRING:
        return cur.text(MAX_STRING_BYTES, f"value of {key!r}")
    if value_type != _T_ARRAY:
        raise _damaged(f"key {key!r} has unknown value type {value_type}")
    item_type, count = cur.u32(), cur.u64()
    if count > MAX_ARRAY_ITEMS:
        raise _damaged(f"key {key!r}: array of {count} items exceeds the cap of {MAX_ARRAY_ITEMS}")
    if item_type == _T_STRING:
        if key == "tokenizer.ggml.tokens":
            if count > MAX_VOCAB:
                raise _damaged(f"a vocabulary of {count} tokens exceeds the cap of {MAX_VOCAB}")
            return cur.string_array(count, keep=True)  # type: ignore[return-value]
        if count <= SMALL_ARRAY:
            # Array strings never reach llama-cpp-python's metadata dict, and RWKV vocabularies
            # hold raw bytes legitimately: only scalar strings must be valid UTF-8.
            return tuple(t.decode("utf-8", "replace") for t in cur.string_array(count, keep=True) or ())
        cur.string_array(count, keep=False)
        return _Array(item_type, count)
    if item_type not in _SCALAR_STRUCTS:  # nested arrays: llama.cpp refuses them too
        raise _damaged(f"key {key!r}: array of unsupported type {item_type}")
    st = _SCALAR_STRUCTS[item_type]
    cur.need(st.size * count)
    start, cur.pos = cur.pos, cur.pos + st.size * count
    if count <= SMALL_ARRAY:
        return tuple(v for (v,) in st.iter_unpack(cur.buf[start : cur.pos]))
    return _Array(item_type, count)


def _parse(buf: mmap.mmap | bytes, size: int, available: int | None = None) -> _Parsed:
    cur = _Cursor(buf, size, available)
    cur.need(4)
    if buf[0:4] != GGUF_MAGIC:
        raise NotAGGUF(
            "This is not a GGUF model file. slmchat runs GGUF files (the format llama.cpp uses).",
            detail=f"magic bytes {bytes(buf[0:4])!r}",
        )
    cur.pos = 4
    version = cur.u32()
    if version not in (2, 3):
        raise UnsupportedModel(
            "This GGUF file uses a format version slmchat cannot read. Look for a newer copy of the model.",
            detail=f"GGUF version {version}",
        )
    n_tensors, n_kv = cur.u64(), cur.u64()
    if n_kv > MAX_KV or n_tensors > MAX_TENSORS:
        raise _damaged(f"{n_kv} metadata entries / {n_tensors} tensors exceed the caps")
    values: dict[str, Scalar | tuple | _Array] = {}
    tokens: list[bytes] | None = None
    for _ in range(n_kv):
        key = cur.text(MAX_KEY_BYTES, "a metadata key")
        if not key or key in values:
            raise _damaged(f"empty or duplicate metadata key {key!r}")
        value = _read_value(cur, key, cur.u32())
        if isinstance(value, list):
            tokens = value
            value = _Array(_T_STRING, len(tokens))
        values[key] = value
    alignment = values.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise _damaged(f"general.alignment {alignment!r} is not a power of two")
    tensors = _read_tensor_infos(cur, n_tensors, alignment)
    return _Parsed(version, values, tokens, tensors, size)


def _read_tensor_infos(cur: _Cursor, n_tensors: int, alignment: int) -> list[tuple[str, tuple[int, ...], str, int]]:
    """Read the tensor table; tensors must be packed in order, aligned, and inside the file."""
    infos = []
    names: set[str] = set()
    expected_offset = data_end = 0
    for _ in range(n_tensors):
        name = cur.text(MAX_TENSOR_NAME, "a tensor name")
        if name in names:
            raise _damaged(f"duplicate tensor name {name!r}")
        names.add(name)
        n_dims = cur.u32()
        if n_dims > MAX_DIMS:
            raise _damaged(f"tensor {name!r} has {n_dims} dimensions")
        dims = tuple(cur.u64() for _ in range(n_dims))
        n_elements = math.prod(dims)
        if any(d >= 1 << 63 for d in dims) or n_elements >= 1 << 63:
            raise _damaged(f"tensor {name!r} has an impossible shape {dims}")
        type_id = cur.u32()
        if type_id not in GGML_TYPES:
            raise _damaged(f"tensor {name!r} has unknown ggml type {type_id}")
        type_name, block, type_size = GGML_TYPES[type_id]
        if dims and dims[0] % block:
            raise _damaged(f"tensor {name!r}: row of {dims[0]} is not a multiple of {type_name}'s block {block}")
        nbytes = n_elements // block * type_size
        offset = cur.u64()
        if offset != expected_offset:
            raise _damaged(f"tensor {name!r} at offset {offset}, expected {expected_offset}")
        data_end = offset + nbytes
        expected_offset += -(-nbytes // alignment) * alignment
        infos.append((name, dims, type_name, nbytes))
    if infos:
        data_start = -(-cur.pos // alignment) * alignment
        if data_start + data_end > cur.size:
            raise _Truncated(f"tensor data ends at {data_start + data_end}, file has {cur.size} bytes")
    return infos


def _load(path: str | Path) -> _Parsed:
    path = Path(path)
    if path.exists() and not path.is_file():  # a folder, a pipe, a device: never open() them
        raise NotAGGUF("This is not a model file.", detail=f"{path} is not a regular file")
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            if size == 0:
                raise _damaged("empty file", message=_TRUNCATED)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, size)
    except FileNotFoundError:
        raise ModelFileMissing(f"The model file is missing: {plain_text(str(path))}", detail=str(path)) from None
    except _Truncated as exc:
        raise ModelFileDamaged(_TRUNCATED, detail=f"{path}: {exc}") from None
    except OSError as exc:
        raise ModelFileMissing(f"The model file cannot be read: {exc.strerror}", detail=f"{path}: {exc}") from None


# --- facts --------------------------------------------------------------------------------
def _int(values: Mapping, key: str, default: int | None = 0) -> int | None:
    """An integer entry; per-layer arrays give their largest value (the memory-relevant one)."""
    value = values.get(key)
    if value is None:
        return default
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        value = max(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _damaged(f"{key} should be a whole number, is {value!r}", message=_INVALID)
    return value


def _quantization(values: Mapping, tensors: list) -> str:
    file_type = values.get("general.file_type")
    if isinstance(file_type, int) and (file_type & ~1024) in LLAMA_FTYPES:
        return LLAMA_FTYPES[file_type & ~1024]
    by_type: Counter[str] = Counter()
    for _name, dims, type_name, nbytes in tensors:
        if len(dims) >= 2:
            by_type[type_name] += nbytes
    return by_type.most_common(1)[0][0] if by_type else "unknown"


def _vet_templates(values: Mapping) -> tuple[str | None, str | None]:
    """(default template, problem). Every template key is vetted: llama-cpp-python compiles them all."""
    default = values.get("tokenizer.chat_template")
    keys = sorted(k for k in values if k == "tokenizer.chat_template" or k.startswith("tokenizer.chat_template."))
    for key in keys:
        text = values[key]
        if not isinstance(text, str):
            return None, f"{key} is not text"
        try:
            check_chat_template(text)
        except UnsafeChatTemplate as exc:
            where = "" if key == "tokenizer.chat_template" else f"{key}: "
            return None, f"{exc} ({where}{exc.detail})"
    return (default if isinstance(default, str) else None), None


def _info(path: Path, parsed: _Parsed) -> GGUFInfo:
    v = parsed.values
    arch = v.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise _damaged("general.architecture is missing")
    a = arch + "."
    embedding = _int(v, a + "embedding_length")
    heads = _int(v, a + "attention.head_count")
    heads_kv = _int(v, a + "attention.head_count_kv", heads)
    per_head = embedding // heads if heads else 0
    template, problem = _vet_templates(v)
    tokenizer = v.get("tokenizer.ggml.model", "")
    name = v.get("general.name")
    return GGUFInfo(
        path=path,
        file_size=parsed.file_size,
        version=parsed.version,
        architecture=arch,
        name=plain_text(name if isinstance(name, str) and name.strip() else path.stem) or path.name,
        parameter_count=sum(math.prod(dims) for _n, dims, _t, _b in parsed.tensors),
        context_length=_int(v, a + "context_length"),
        block_count=_int(v, a + "block_count"),
        embedding_length=embedding,
        head_count=heads,
        head_count_kv=heads_kv,
        key_length=_int(v, a + "attention.key_length", per_head),
        value_length=_int(v, a + "attention.value_length", per_head),
        quantization=_quantization(v, parsed.tensors),
        tensor_bytes=sum(b for _n, _d, _t, b in parsed.tensors),
        chat_template=template,
        template_problem=problem,
        tokenizer_model=tokenizer if isinstance(tokenizer, str) else "",
        vocab_size=len(parsed.tokens) if parsed.tokens is not None else (_int(v, a + "vocab_size") or 0),
        bos_token_id=_int(v, "tokenizer.ggml.bos_token_id", None),
        eos_token_id=_int(v, "tokenizer.ggml.eos_token_id", None),
        metadata=MappingProxyType(
            {k: (x[:METADATA_STRING_SHOWN] if isinstance(x, str) else x) for k, x in v.items() if isinstance(x, (str, int, float))}
        ),
    )


def read_gguf(path: str | Path) -> GGUFInfo:
    """Parse the container and report its facts; no judgement on the values.

    Raises ModelFileMissing, NotAGGUF or ModelFileDamaged (truncated, corrupt, over a cap).
    Chat templates are vetted here too (a parse, never a compile), so `is_chat` is always safe
    to trust.
    """
    path = Path(path)
    return _info(path, _load(path))


def check_gguf(path: str | Path) -> GGUFInfo:
    """`read_gguf` plus every check for values that crash or hang llama.cpp.

    Raises ModelFileDamaged or UnsupportedModel with a message for the user and the technical
    reason in `detail`. An unsafe or unreadable chat template does NOT fail the file: it is
    explained in `template_problem`, `chat_template` is None, and the model is offered for text
    completion only.
    """
    path = Path(path)
    return _checked(path, _load(path))


def read_gguf_header(data: bytes, file_size: int, name: str, *, check: bool = False) -> GGUFInfo:
    """`read_gguf` (or, with `check`, `check_gguf`) of a file known only by its first bytes.

    For files not on this computer (a hub listing): `data` is a prefix of a `file_size`-byte file,
    `name` its file name. The same parser, caps and checks run, with the tensor data taken on
    trust from `file_size`. Raises HeaderIncomplete when `data` ends before the tensor table
    does (fetch a longer prefix and call again), else the errors of `read_gguf` / `check_gguf`.
    """
    path = Path(name)
    if file_size <= 0:
        raise _damaged(f"{name}: empty file", message=_TRUNCATED)
    try:
        parsed = _parse(data, file_size, available=len(data))
    except _Truncated as exc:
        raise ModelFileDamaged(_TRUNCATED, detail=f"{name}: {exc}") from None
    return _checked(path, parsed) if check else _info(path, parsed)


def _checked(path: Path, parsed: _Parsed) -> GGUFInfo:
    info = _info(path, parsed)
    _check_architecture(info)
    _check_hyperparameters(parsed.values, info)
    _check_tensors(parsed.tensors)
    _check_vocabulary(parsed, info)
    return info


# --- semantic checks (each mirrors an abort measured in llama.cpp 0.3.36) --------------------
def _check_architecture(info: GGUFInfo) -> None:
    if info.architecture not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModel(
            f"slmchat cannot run this kind of model ({plain_text(info.architecture, 40)}).",
            detail=f"architecture {info.architecture!r} is not in llama.cpp 0.3.36",
        )
    if info.tokenizer_model not in TOKENIZER_MODELS:
        raise UnsupportedModel(
            "slmchat cannot run this model: its tokenizer is of an unknown kind.",
            detail=f"tokenizer.ggml.model {info.tokenizer_model!r}",
        )


def _check_hyperparameters(v: Mapping, info: GGUFInfo) -> None:
    a = info.architecture + "."

    def bad(why: str) -> ModelFileDamaged:
        return _damaged(why, message=_INVALID)

    if not 1 <= info.block_count <= MAX_LAYERS:
        raise bad(f"block_count {info.block_count} is outside 1..{MAX_LAYERS}")
    if not 1 <= info.context_length <= MAX_CONTEXT:
        raise bad(f"context_length {info.context_length} is outside 1..{MAX_CONTEXT}")
    if info.embedding_length < 1:
        raise bad(f"embedding_length {info.embedding_length}")
    nextn = _int(v, a + "nextn_predict_layers")
    if nextn > info.block_count:
        raise bad(f"nextn_predict_layers {nextn} > block_count {info.block_count}")
    _check_experts(v, a, bad)
    _check_heads(v, a, info, bad)
    rope = v.get(a + "rope.scaling.type", "linear")
    if rope not in ("none", "linear", "yarn", "longrope"):
        raise bad(f"unknown rope scaling type {rope!r}")
    for key in ("attention.layer_norm_epsilon", "attention.layer_norm_rms_epsilon", "attention.group_norm_epsilon"):
        eps = v.get(a + key)
        if eps is not None and not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise bad(f"{a + key} is {eps!r}; it must be a finite number >= 0")


def _check_experts(v: Mapping, a: str, bad) -> None:
    experts = _int(v, a + "expert_count")
    used = _int(v, a + "expert_used_count")
    groups = _int(v, a + "expert_group_count")
    group_used = _int(v, a + "expert_group_used_count")
    if experts > MAX_EXPERTS or used > experts:
        raise bad(f"expert_count {experts}, expert_used_count {used}")
    if experts == 0:
        if used or groups:
            raise bad(f"expert_used_count {used} / expert_group_count {groups} without experts")
        return
    if used == 0:
        raise bad(f"expert_count {experts} without expert_used_count")
    if groups >= experts or (groups > 1 and (experts % groups or not 0 < group_used < groups)):
        raise bad(f"experts {experts}, groups {groups}, groups used {group_used}")


def _check_heads(v: Mapping, a: str, info: GGUFInfo, bad) -> None:
    heads = _layer_values(v, a + "attention.head_count", info.block_count, bad)
    heads_kv = _layer_values(v, a + "attention.head_count_kv", info.block_count, bad) or heads
    if not heads or heads[0] == 0:
        return  # recurrent models (Mamba, RWKV) have no attention heads
    if a + "attention.key_length" not in v and info.embedding_length % heads[0]:
        raise bad(f"embedding_length {info.embedding_length} is not divisible by head_count {heads[0]}")
    for h, kv in zip(heads, heads_kv):
        if h and kv and h % kv:  # hybrid models have layers without (KV) heads
            raise bad(f"head_count {h} is not a multiple of head_count_kv {kv}")


def _layer_values(v: Mapping, key: str, n_layers: int, bad) -> list[int]:
    """One value per layer: a scalar applies to all, an array must have one per layer."""
    value = v.get(key)
    if value is None:
        return []
    values = list(value) if isinstance(value, tuple) else [value] * n_layers
    if len(values) != n_layers or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in values):
        raise bad(f"{key} is {value!r} for {n_layers} layers")
    return values


def _check_tensors(tensors: list) -> None:
    for name, _dims, type_name, _nbytes in tensors:
        if name.endswith(("_norm.weight", "_norm.bias")) and type_name not in _NORM_TYPES:
            raise _damaged(f"norm tensor {name!r} has type {type_name}", message=_INVALID)


def _check_vocabulary(parsed: _Parsed, info: GGUFInfo) -> None:
    tokens = parsed.tokens
    v = parsed.values
    if info.tokenizer_model in ("none", "no_vocab"):
        return
    if tokens is None:
        raise _damaged("tokenizer.ggml.tokens is missing")
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        extra = v.get(key)
        count = extra.count if isinstance(extra, _Array) else len(extra) if isinstance(extra, tuple) else None
        if count is not None and count < len(tokens):
            raise _damaged(f"{key} has {count} entries for {len(tokens)} tokens")
    # llama.cpp renames empty tokens "[EMPTY_<id>]" before asserting every text is unique.
    texts = {t or f"[EMPTY_{i}]".encode() for i, t in enumerate(tokens)}
    if len(texts) != len(tokens):
        raise _damaged(f"{len(tokens) - len(texts)} duplicate vocabulary entries", message=_INVALID)
    if info.tokenizer_model == "llama":
        # SentencePiece falls back to byte tokens for any character it lacks; a missing one
        # throws from llama_tokenize and aborts the process, triggered by what the user types.
        missing = [b for b in range(256) if b"<0x%02X>" % b not in texts and (b == 0 or bytes([b]) not in texts)]
        if missing:
            raise _damaged(f"SentencePiece vocabulary lacks {len(missing)} byte tokens, e.g. <0x{missing[0]:02X}>",
                           message=_INVALID)
