"""What this machine has (RAM, cores, GPU, llama.cpp backend) and whether a model will fit and run fast enough.

Detection (`detect_machine`) touches the system; everything after it — the memory estimate,
the CPU speed estimate, the fit label, the context that fits — is a pure function of plain
records, so decisions for CUDA, Metal or CPU-only machines are tested with constructed `Machine`s.

The estimate mirrors the buffers llama.cpp itself allocates (its load log prints them:
"model buffer", "KV buffer", "compute buffer", "output buffer") and was calibrated against
measured RSS by `benchmarks/memory_estimate.py`.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib.util
import logging
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

from slmchat.core.errors import NotEnoughMemory

log = logging.getLogger(__name__)

GIB = 1024**3
MIB = 1024**2

# How the engine runs attention on the CPU (backend.decide): flash attention OFF, keys cached
# as q8_0 (34 bytes per 32 values), values as f16, 128-token ubatches. Measured with llama-bench
# on SmolLM2-135M, 1 thread (docs/BENCHMARKS.md): at a KV depth of 1,600 this decodes 109 tok/s
# against 78 with flash attention on, and evaluates a 37-token turn 1.7x faster; from a depth of
# ~200 tokens on it is the faster choice, and 128-token ubatches prefilled fastest (251 tok/s
# at depth 0, 185 at 2,048) while llama.cpp reserves a quarter of the 512-token compute buffer.
# (A q8_0 V cache would need flash attention.)
CPU_UBATCH = 128
CACHE_TYPE_BYTES = {"q8_0": 34 / 32, "f16": 2.0}  # bytes per cached value
# With a GPU the engine keeps llama.cpp's defaults: flash attention (auto), f16 cache, 512-token
# ubatches.
GPU_UBATCH = 512
# llama.cpp rounds the context up to a multiple of 256 cells.
CONTEXT_STEP = 256
MIN_CONTEXT = 512
# The calibration below is benchmarks/memory_estimate.py's measurement of the app's own Engine
# (Linux x86-64, Python 3.11, llama-cpp-python 0.3.36, SmolLM2-135M and Gemma 3 270M at
# 512-8192 tokens, 2026-11-25).
# An engine process before any model: interpreter, psutil, llama.cpp's bindings and library.
PROCESS_BASELINE_BYTES = 33 * MIB
# What loading adds beyond weights and KV cache: llama.cpp's context, graph and tokenizer
# tables (fixed part + per vocabulary entry), fitted to the same two models (49k / 262k tokens:
# 59 and 101 MiB of overhead measured), so in-sample for them.
LOAD_FIXED_BYTES = 16 * MIB
VOCAB_BYTES_PER_TOKEN = 208
# Leave this much of the *available* RAM to the rest of the system and the GUI.
RAM_HEADROOM = 0.10
# However many programs the user closes, the OS and desktop keep at least this much.
OS_RESERVE_BYTES = int(1.5 * GIB)
# Apple GPUs may wire only part of unified memory (Metal's recommendedMaxWorkingSetSize is about
# two thirds of RAM on machines up to 36 GB, three quarters above).
APPLE_GPU_SHARE_SMALL = 0.66
APPLE_GPU_SHARE_LARGE = 0.75
APPLE_SHARE_THRESHOLD = 36 * 1000**3
# How fast a model writes on the CPU alone. Decoding one token reads every weight once, plus the
# conversation memory (KV cache) written so far, so the speed is the bytes the cores can stream
# per second divided by the bytes read per token.
# Per decoding thread (the engine decodes on decode_threads(cores)): measured on the development
# machine (AMD EPYC Zen 5 KVM guest, AVX-512, llama-cpp-python 0.3.36; docs/BENCHMARKS.md): one
# thread decodes SmolLM2-135M-Instruct Q4_1 (96.6 MB of weights, q8_0 keys) at ~98 tok/s with
# 2,048 cached tokens (llama-bench tg64: 129 at 500, 105 at 1,600) — ~13 GB/s counting the weights
# and half of a 4,096-token cache as this estimate does. Rounded down for older or low-power cores.
CPU_BYTES_PER_SECOND_PER_CORE = 12 * 1000**3
# Cores share the memory bus, so beyond a few cores decoding is bound by RAM bandwidth. Peak is
# 25.6 GB/s for one channel of DDR4-3200 and 51.2 GB/s for two; streaming reaches ~80 % of peak.
# 20 GB/s is a conservative sustained figure for laptops and desktops (Apple chips and servers
# have more; a GPU backend is judged by its memory instead).
RAM_BYTES_PER_SECOND = 20 * 1000**3
# Below this a chat user waits for the text instead of reading it: people read about 4 words a
# second silently (238 words a minute, Brysbaert 2019 meta-analysis), about 5.3 tokens. 8 tokens
# a second (6 words) keeps ahead of reading with a margin for slower cores and long prompts.
MIN_CHAT_TOKENS_PER_SECOND = 8.0
# English text is about 3/4 of a word per token in the BPE vocabularies of chat models (OpenAI's
# published rule of thumb); the user is told words, not tokens.
WORDS_PER_TOKEN = 0.75


class Backend(str, enum.Enum):
    """The compute backend llama.cpp was built with (what the user's GPU can do for us)."""

    CPU = "cpu"
    CUDA = "cuda"
    METAL = "metal"
    VULKAN = "vulkan"
    ROCM = "rocm"
    OTHER_GPU = "other-gpu"


class FitLabel(str, enum.Enum):
    FITS = "fits"
    MAY_BE_SLOW = "may_be_slow"
    WONT_FIT = "wont_fit"

    @property
    def text(self) -> str:
        return {"fits": "Fits", "may_be_slow": "May be slow", "wont_fit": "Won't fit"}[self.value]


@dataclass(frozen=True)
class GPU:
    name: str
    vram_total: int
    vram_used: int = 0
    unified: bool = False  # Apple silicon: VRAM *is* system RAM

    @property
    def vram_free(self) -> int:
        return max(0, self.vram_total - self.vram_used)


@dataclass(frozen=True)
class Machine:
    """Detected facts about one computer; build by hand in tests."""

    total_ram: int
    available_ram: int
    physical_cores: int
    backend: Backend = Backend.CPU
    gpus: tuple[GPU, ...] = ()
    system: str = ""  # platform.system()
    arch: str = ""  # platform.machine()
    backend_names: tuple[str, ...] = ()  # as llama.cpp reports them, e.g. ("CPU", "CUDA")

    @property
    def gpu_offload(self) -> bool:
        return self.backend is not Backend.CPU and bool(self.gpus)

    def describe(self) -> str:
        gpu = ", ".join(f"{g.name} ({_gb(g.vram_total)})" for g in self.gpus) or "no GPU"
        return (
            f"{_gb(self.total_ram)} RAM ({_gb(self.available_ram)} free), "
            f"{self.physical_cores} cores, {gpu}, llama.cpp backend: {self.backend.value}"
        )


class ModelShape(Protocol):
    """The GGUF facts the estimate needs; `gguf_check.GGUFInfo` and catalog shapes have them.

    Head counts are the largest per-layer value where a file stores one per layer.
    """

    @property
    def tensor_bytes(self) -> int: ...
    @property
    def block_count(self) -> int: ...
    @property
    def embedding_length(self) -> int: ...
    @property
    def head_count(self) -> int: ...
    @property
    def head_count_kv(self) -> int: ...
    @property
    def key_length(self) -> int | None: ...
    @property
    def value_length(self) -> int | None: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def context_length(self) -> int | None: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model will hold, by part, at one context size."""

    weights: int
    kv_cache: int
    compute: int  # the part of llama.cpp's compute buffers a CPU run touches (full context)
    overhead: int  # process baseline + llama.cpp context and tokenizer tables
    n_ctx: int
    compute_reserved: int = 0  # the whole reservation, which a GPU backend allocates for real
    gpu_kv_cache: int = 0  # the cache as a GPU run keeps it (f16 keys)

    @property
    def total(self) -> int:
        """What the machine feels when the conversation has filled the context (CPU run)."""
        return self.weights + self.kv_cache + self.compute + self.overhead

    @property
    def gpu_total(self) -> int:
        """What a GPU must hold when every layer is offloaded (buffers allocated in full)."""
        return self.weights + self.gpu_kv_cache + max(self.compute, self.compute_reserved)

    def describe(self) -> str:
        return (
            f"needs about {_gb(self.total)} at {self.n_ctx} tokens of context "
            f"(model {_gb(self.weights)}, conversation memory {_gb(self.kv_cache)}, "
            f"work space {_gb(self.compute + self.overhead)})"
        )


@dataclass(frozen=True)
class Fit:
    label: FitLabel
    reason: str
    estimate: MemoryEstimate
    tokens_per_second: float | None = None  # expected decode speed on the CPU; None when a GPU runs it


# --- the estimate -------------------------------------------------------------------------
def _head_dim(info: ModelShape) -> int:
    return info.key_length or info.embedding_length // max(1, info.head_count)


def _meta_int(info: ModelShape, suffix: str) -> int | None:
    """An `<arch>.<suffix>` integer from the GGUF metadata, whatever the architecture."""
    for key, value in (info.metadata or {}).items():
        if key.endswith("." + suffix) and isinstance(value, int):
            return value
    return None


def key_cache_type(info: ModelShape) -> str:
    """The CPU's key cache: q8_0 where a head's keys are whole q8_0 blocks (32 values), else f16.

    Without flash attention llama.cpp does not check that the block size divides the head size,
    and a head of 80 values (Phi-2, StableLM) would be read with wrong strides.
    """
    return "q8_0" if _head_dim(info) % 32 == 0 else "f16"


def kv_cache_bytes(info: ModelShape, n_ctx: int, key_type: str | None = None) -> int:
    """K and V for every layer and cell: n_layer * n_ctx * n_head_kv * (key_len + value_len),
    keys as `key_type` (default: the CPU's, `key_cache_type`), values f16.

    llama-cpp-python keeps sliding-window layers at full size ("full-size SWA cache"), so
    every layer counts the whole context.
    """
    key_len = _head_dim(info)
    value_len = info.value_length or key_len
    cells = _round_up(n_ctx, CONTEXT_STEP)
    key_bytes = CACHE_TYPE_BYTES[key_type or key_cache_type(info)]
    return int(info.block_count * cells * info.head_count_kv
               * (key_len * key_bytes + value_len * CACHE_TYPE_BYTES["f16"]))


def _attention_per_cell(info: ModelShape, n_ubatch: int) -> int:
    """Bytes per context cell while a full ubatch attends (flash attention off, as on the CPU).

    Per head: the f32 scores and the f16 copy ggml makes of the softmax for the V product; per
    token: one f32 mask, two for models with sliding-window layers (Gemma 2/3).
    """
    masks = 2 if _meta_int(info, "attention.sliding_window") else 1
    return n_ubatch * (6 * info.head_count + 4 * masks)


def _activation_bytes(info: ModelShape, n_ubatch: int) -> int:
    """One layer's live activations for a ubatch: FFN gate/up, the residual, Q, K and V."""
    n_embd = info.embedding_length
    n_ff = _meta_int(info, "feed_forward_length") or 4 * n_embd
    q_k_v = (info.head_count + 2 * info.head_count_kv) * _head_dim(info)
    return n_ubatch * 4 * (2 * n_ff + n_embd + q_k_v)


def estimate_memory(info: ModelShape, n_ctx: int) -> MemoryEstimate:
    """What loading this model with `n_ctx` context costs, from its GGUF metadata alone.

    `total` is the engine's CPU run (`key_cache_type` keys, f16 values, flash attention off,
    CPU_UBATCH). The weights are the tensor bytes: with or without mmap every page is read on the
    first full pass. The compute part is the worst case of a CPU run, a full ubatch attending over
    a full context; llama.cpp reserves more (logits for a whole ubatch) but a chat never touches
    it on CPU. `gpu_total` is a GPU run: f16 keys, and the whole reservation for its larger
    ubatches, which a GPU backend allocates (`compute_reserved`).
    """
    cells = _round_up(n_ctx, CONTEXT_STEP)
    n_vocab = info.vocab_size
    attention = cells * _attention_per_cell(info, CPU_UBATCH)
    output = n_vocab * 4
    return MemoryEstimate(
        weights=int(info.tensor_bytes),
        kv_cache=kv_cache_bytes(info, n_ctx),
        compute=attention + _activation_bytes(info, CPU_UBATCH) + output,
        overhead=PROCESS_BASELINE_BYTES + LOAD_FIXED_BYTES + n_vocab * VOCAB_BYTES_PER_TOKEN,
        n_ctx=n_ctx,
        compute_reserved=(max(attention, n_vocab * GPU_UBATCH * 4)
                          + _activation_bytes(info, GPU_UBATCH) + output),
        gpu_kv_cache=kv_cache_bytes(info, n_ctx, "f16"),
    )


# --- will it fit --------------------------------------------------------------------------
def apple_gpu_budget(total_ram: int) -> int:
    """How much unified memory Metal lets one process wire for the GPU."""
    share = APPLE_GPU_SHARE_LARGE if total_ram > APPLE_SHARE_THRESHOLD else APPLE_GPU_SHARE_SMALL
    return int(total_ram * share)


def fit(estimate: MemoryEstimate, machine: Machine) -> Fit:
    """Label a model for this machine, with the numbers behind the label in `reason`.

    Memory first (does it load at all, and without closing programs), then, where the CPU runs
    it, speed: a model that fits but writes slower than people read "may be slow". A model that
    fits on a GPU is fast, so its label is about memory alone.
    """
    memory = _memory_fit(estimate, machine)
    if machine.gpu_offload or memory.label is FitLabel.WONT_FIT:
        return memory
    return _with_cpu_speed(memory, machine)


def decode_threads(physical_cores: int) -> int:
    """Threads a reply starts decoding on, and the count the speed estimate assumes: one core
    fewer than the machine has, so the window and the rest of the system keep a core.
    llama.cpp's threads wait for each other at every step of a token, so one thread pushed off
    its core stalls them all: on the 2-core development machine, with one other program busy on
    one core, the app decoded at 39-52 tokens/s on two threads and 139-145 on one
    (docs/BENCHMARKS.md). While the machine is otherwise idle the engine decodes on every core
    (engine/threads.py follows the load during a reply).
    Prompts use every core: the window is idle while the user waits for the first word."""
    return max(1, physical_cores - 1)


def cpu_tokens_per_second(estimate: MemoryEstimate, physical_cores: int) -> float:
    """The expected decode speed on the CPU alone, in tokens a second.

    Each token reads all the weights and the conversation memory so far; the cache counts at
    half the context, the average over a conversation that fills it. The decoding threads stream
    bytes at CPU_BYTES_PER_SECOND_PER_CORE each, together no faster than RAM_BYTES_PER_SECOND.
    """
    threads = decode_threads(physical_cores)
    streamed = min(threads * CPU_BYTES_PER_SECOND_PER_CORE, RAM_BYTES_PER_SECOND)
    return streamed / max(1, estimate.weights + estimate.kv_cache // 2)


def _with_cpu_speed(memory: Fit, machine: Machine) -> Fit:
    """`memory`'s label, made "may be slow" when the CPU would write slower than people read."""
    speed = cpu_tokens_per_second(memory.estimate, machine.physical_cores)
    cores = f"your {machine.physical_cores} processor core{'s' if machine.physical_cores != 1 else ''}"
    words = f"about {_words_per_second(speed)} a second"
    if speed >= MIN_CHAT_TOKENS_PER_SECOND:
        reason = f"{memory.reason} On {cores} it should write {words}."
        return dataclasses.replace(memory, reason=reason, tokens_per_second=speed)
    reason = (f"{memory.reason} On {cores} it would write only {words}, slower than you read; "
              f"a smaller model answers faster.")
    return Fit(FitLabel.MAY_BE_SLOW, reason, memory.estimate, speed)


def _words_per_second(tokens_per_second: float) -> str:
    words = tokens_per_second * WORDS_PER_TOKEN
    if words < 1:
        return "less than one word"
    return "one word" if round(words) == 1 else f"{round(words)} words"


def _memory_fit(estimate: MemoryEstimate, machine: Machine) -> Fit:
    """The label memory alone gives (the context search uses it: speed does not depend on it)."""
    if machine.gpu_offload:
        gpu = max(machine.gpus, key=lambda g: g.vram_free)
        return _fit_unified(estimate, machine) if gpu.unified else _fit_gpu(estimate, machine, gpu)
    return _fit_cpu(estimate, machine)


def _ram_budget(machine: Machine) -> int:
    return int(machine.available_ram * (1 - RAM_HEADROOM))


def _fit_cpu(estimate: MemoryEstimate, machine: Machine) -> Fit:
    what = f"This model {estimate.describe()}"
    if estimate.total > _ram_budget(machine):
        if estimate.total <= machine.total_ram - max(machine.total_ram * RAM_HEADROOM, OS_RESERVE_BYTES):
            return Fit(
                FitLabel.MAY_BE_SLOW,
                f"{what}; only {_gb(machine.available_ram)} of your {_gb(machine.total_ram)} RAM "
                f"is free now. Close other programs first.",
                estimate,
            )
        return _too_big(estimate, machine)
    return Fit(FitLabel.FITS, f"{what}; you have {_gb(machine.available_ram)} of RAM free.", estimate)


def _fit_gpu(estimate: MemoryEstimate, machine: Machine, gpu: GPU) -> Fit:
    """A dedicated card: all layers in VRAM fits; the spill-over in RAM is slower."""
    vram = int(gpu.vram_free * (1 - RAM_HEADROOM))
    on_gpu = f"This model needs about {_gb(estimate.gpu_total)} of graphics memory at {estimate.n_ctx} tokens"
    if estimate.gpu_total <= vram and estimate.overhead <= _ram_budget(machine):
        return Fit(FitLabel.FITS, f"{on_gpu}; your {gpu.name} has {_gb(gpu.vram_free)} free.", estimate)
    spill = estimate.gpu_total - vram + estimate.overhead
    if spill <= _ram_budget(machine):
        return Fit(
            FitLabel.MAY_BE_SLOW,
            f"{on_gpu}; your {gpu.name} has only {_gb(gpu.vram_free)} free, so about "
            f"{_gb(spill)} runs on the processor from your {_gb(machine.available_ram)} of free RAM.",
            estimate,
        )
    return _too_big(estimate, machine)


def _fit_unified(estimate: MemoryEstimate, machine: Machine) -> Fit:
    """Apple silicon: the GPU shares RAM but may wire only part of it."""
    budget = min(apple_gpu_budget(machine.total_ram), _ram_budget(machine))
    need = estimate.gpu_total + estimate.overhead
    what = f"This model needs about {_gb(need)} at {estimate.n_ctx} tokens of context"
    if estimate.gpu_total <= budget and need <= _ram_budget(machine):
        return Fit(FitLabel.FITS, f"{what}; your Mac can give the graphics chip {_gb(budget)}.", estimate)
    if estimate.total <= _ram_budget(machine):
        return Fit(
            FitLabel.MAY_BE_SLOW,
            f"{what}; that is more than the {_gb(budget)} your Mac lets the graphics chip use, "
            f"so it runs on the processor.",
            estimate,
        )
    return _too_big(estimate, machine)


def _too_big(estimate: MemoryEstimate, machine: Machine) -> Fit:
    where = f"{_gb(machine.total_ram)} of RAM"
    if machine.gpus:
        where += " and " + ", ".join(f"{_gb(g.vram_total)} on {g.name}" for g in machine.gpus)
    return Fit(
        FitLabel.WONT_FIT,
        f"This model {estimate.describe()}; this computer has {where}.",
        estimate,
    )


_LABEL_RANK = {FitLabel.FITS: 0, FitLabel.MAY_BE_SLOW: 1, FitLabel.WONT_FIT: 2}


def max_context_that_fits(
    info: ModelShape, machine: Machine, wanted: int
) -> int:
    """The largest context (≤ wanted and ≤ the trained context) with the best label reachable.

    Judged by memory alone: a slow CPU is no reason to cut the context the user asked for. A model
    that only "may be slow" even at the smallest context still gets the largest context that
    stays "may be slow"; one that won't fit at all raises NotEnoughMemory.
    """
    ceiling = min(wanted, info.context_length or wanted)
    floor = min(MIN_CONTEXT, ceiling)
    best = _LABEL_RANK[_memory_fit(estimate_memory(info, floor), machine).label]
    if best == _LABEL_RANK[FitLabel.WONT_FIT]:
        need = estimate_memory(info, floor)
        raise NotEnoughMemory(
            f"This model {need.describe()}, more than this computer can hold. "
            "Choose a smaller model or a smaller quantization.",
            detail=machine.describe(),
        )

    def ok(n_ctx: int) -> bool:
        return _LABEL_RANK[_memory_fit(estimate_memory(info, n_ctx), machine).label] <= best

    if ok(ceiling):
        return ceiling
    low, high = floor, ceiling  # ok(low) holds, ok(high) does not; the estimate grows with n_ctx
    while high - low > CONTEXT_STEP:
        middle = _round_up((low + high) // 2, CONTEXT_STEP)
        if middle >= high:
            break
        low, high = (middle, high) if ok(middle) else (low, middle)
    return low


# --- detection ----------------------------------------------------------------------------
def parse_nvidia_smi(text: str) -> tuple[GPU, ...]:
    """Parse `nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits`.

    One line per GPU, sizes in MiB: "NVIDIA GeForce RTX 3070, 8192, 512". Lines that do not
    parse (driver warnings, "[N/A]") are skipped rather than guessed.
    """
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3:
            continue
        name, total, used = parts
        try:
            gpus.append(GPU(name=name, vram_total=int(float(total) * MIB), vram_used=int(float(used) * MIB)))
        except ValueError:
            continue
    return tuple(gpus)


def _nvidia_gpus() -> tuple[GPU, ...]:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return ()
    try:
        result = subprocess.run(
            [binary, "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.info("nvidia-smi failed: %s", exc)
        return ()
    return parse_nvidia_smi(result.stdout) if result.returncode == 0 else ()


def parse_system_info(text: str) -> tuple[str, ...]:
    """Backend names from `llama_print_system_info()`: "CPU : AVX = 1 | ... | CUDA : ARCHS = ..."."""
    names = re.findall(r"(?:^|\|)\s*([A-Za-z][\w-]*) : ", text)
    return tuple(dict.fromkeys(names))


def backend_from_names(names: Sequence[str], gpu_offload: bool) -> Backend:
    """Map llama.cpp's backend names to our enum; CPU unless llama.cpp can offload."""
    if not gpu_offload:
        return Backend.CPU
    upper = {n.upper() for n in names}
    for key, backend in (("CUDA", Backend.CUDA), ("METAL", Backend.METAL), ("MTL", Backend.METAL),
                         ("HIP", Backend.ROCM), ("ROCM", Backend.ROCM), ("VULKAN", Backend.VULKAN)):
        if key in upper:
            return backend
    return Backend.OTHER_GPU


def detect_llama_backend() -> tuple[Backend, tuple[str, ...]]:
    """Ask the installed llama.cpp what it was built with; CPU when it is not installed."""
    try:
        from slmchat.core.llama_api import llama_cpp  # lazily: detection must work without it
    except ImportError:
        return Backend.CPU, ()
    raw = llama_cpp.llama_print_system_info()
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    names = parse_system_info(text)
    return backend_from_names(names, bool(llama_cpp.llama_supports_gpu_offload())), names


# ggml's backend libraries, as llama-cpp-python installs them ("libggml-cuda.so",
# "ggml-vulkan.dll"), and the names ggml's registry gives those backends.
# libggml-cuda.so, ggml-vulkan.dll; a portable build's CPU variants too (libggml-cpu-haswell.so).
_BACKEND_LIBRARY = re.compile(r"^(?:lib)?ggml-([a-z0-9]+)(?:-[a-z0-9_]+)?\.(?:so|dylib|dll)$", re.IGNORECASE)
_LIBRARY_BACKEND_NAMES = {"cpu": "CPU", "cuda": "CUDA", "metal": "Metal", "vulkan": "Vulkan",
                          "hip": "ROCm", "blas": "BLAS", "rpc": "RPC", "sycl": "SYCL",
                          "opencl": "OpenCL", "musa": "MUSA", "cann": "CANN"}
# ggml backends that run on the CPU side; anything else registered is an accelerator.
HOST_BACKENDS = frozenset({"CPU", "BLAS", "RPC"})


def backend_from_library_files(files: Sequence[str]) -> tuple[Backend, tuple[str, ...]]:
    """The backend and backend names (accelerators first) that the file names of
    llama-cpp-python's `lib` folder show it was built with."""
    found = []
    for name in files:
        match = _BACKEND_LIBRARY.match(name)
        if match and match.group(1).lower() in _LIBRARY_BACKEND_NAMES:
            found.append(_LIBRARY_BACKEND_NAMES[match.group(1).lower()])
    names = tuple(dict.fromkeys(sorted(found, key=lambda n: n in HOST_BACKENDS)))
    accelerators = [n for n in names if n not in HOST_BACKENDS]
    return backend_from_names(names, gpu_offload=bool(accelerators)), names


def installed_llama_backend() -> tuple[Backend, tuple[str, ...]]:
    """The backend the installed llama.cpp was built with, read from its library files
    without loading them: the GUI process must not load llama.cpp (only the engine's child
    does). A loaded engine's `ModelInfo.backend` is the authority: see `with_engine_backend`."""
    spec = importlib.util.find_spec("llama_cpp")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return Backend.CPU, ()
    folder = Path(next(iter(spec.submodule_search_locations))) / "lib"
    try:
        return backend_from_library_files([entry.name for entry in folder.iterdir()])
    except OSError:
        return Backend.CPU, ()


def with_engine_backend(machine: Machine, backend: str) -> Machine:
    """`machine` with the backend a loaded engine reports (`ModelInfo.backend`: "CPU",
    "CUDA", "Metal", ...), which llama.cpp itself chose in the engine's process."""
    names = tuple(dict.fromkeys((backend, *machine.backend_names)))
    return dataclasses.replace(
        machine, backend=backend_from_names((backend,), gpu_offload=backend.upper() != "CPU"),
        backend_names=names)


def detect_machine(probe_backend: bool = True) -> Machine:
    """Look at this computer now (RAM changes as programs come and go: call it again).

    `probe_backend` asks llama.cpp itself what it was built with, which loads llama.cpp into
    this process; the GUI passes False and gets the backend from the library files instead.
    """
    memory = psutil.virtual_memory()
    system, arch = platform.system(), platform.machine()
    backend, names = detect_llama_backend() if probe_backend else installed_llama_backend()
    gpus: tuple[GPU, ...] = _nvidia_gpus()
    if system == "Darwin" and arch == "arm64":
        gpus = (GPU(name="Apple GPU", vram_total=apple_gpu_budget(memory.total), unified=True),)
    return Machine(
        total_ram=memory.total,
        available_ram=memory.available,
        physical_cores=psutil.cpu_count(logical=False) or os.cpu_count() or 1,
        backend=backend,
        gpus=gpus,
        system=system,
        arch=arch,
        backend_names=names,
    )


# --- helpers ------------------------------------------------------------------------------
def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step


def _gb(n_bytes: int) -> str:
    return f"{n_bytes / 1000**3:.1f} GB"
