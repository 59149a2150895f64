"""How to run llama.cpp here: detect the hardware and the build, then decide settings from facts.

Detection (`detect()`) touches the machine; deciding (`decide()`) is a pure function of the
detected facts, the model's shape and the user's `EngineConfig`, so every CUDA, Metal or AMX
choice can be tested on any machine by handing it other facts. How much memory a model needs is
models/hardware.py's calibrated estimate, the one estimate of the app: the context size and the engine
process's memory cap both come from it.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmchat.core.generation import EngineConfig
from slmchat.core.models import hardware

log = logging.getLogger(__name__)

# Room for Python, the pipe and allocator slack above the estimate before a child counts as a
# runaway; the estimate itself is doubled, so only a real blow-up crosses the cap.
_CAP_HEADROOM = 2 * hardware.GIB
_CAP_SHARE_OF_RAM = 0.9


@dataclass(frozen=True)
class Detected:
    """Facts about this machine and this llama.cpp build."""

    gpu_offload: bool  # llama_supports_gpu_offload()
    backends: tuple[str, ...]  # ggml backend registry names, e.g. ("CUDA", "CPU")
    cpu_has_amx: bool
    machine: hardware.Machine  # RAM, cores and GPUs, for the memory estimate

    @property
    def physical_cores(self) -> int:
        return self.machine.physical_cores


@dataclass(frozen=True)
class Resolved:
    """The settings a model is actually loaded with; shown with every speed figure."""

    n_ctx: int
    n_threads: int  # decoding a reply
    n_threads_batch: int  # evaluating a prompt
    n_gpu_layers: int
    use_extra_bufts: bool
    backend: str  # "CPU", "CUDA", "Metal", "Vulkan", ...
    flash_attn: bool | None = False  # None: llama.cpp decides (AUTO: on where the device has it)
    key_cache_type: str = "q8_0"  # "q8_0" or "f16"; values are always f16
    n_ubatch: int = hardware.CPU_UBATCH


def cpu_has_amx(cpuinfo: str) -> bool:
    """True when /proc/cpuinfo's flags list AMX tiles (Xeon Sapphire Rapids and later)."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return bool(flags & {"amx_tile", "amx_int8", "amx_bf16"})
    return False


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:  # not Linux: AMX crashes have only been seen on Linux servers
        return ""


def _ggml_backend_names() -> tuple[str, ...]:
    """Names of the backends this llama.cpp build registered, from ggml's own registry."""
    from llama_cpp._ggml import libggml  # the shared library llama_cpp already loaded

    count = libggml.ggml_backend_reg_count
    count.restype = ctypes.c_size_t
    get = libggml.ggml_backend_reg_get
    get.argtypes, get.restype = [ctypes.c_size_t], ctypes.c_void_p
    name = libggml.ggml_backend_reg_name
    name.argtypes, name.restype = [ctypes.c_void_p], ctypes.c_char_p
    return tuple(name(get(i)).decode("utf-8", "replace") for i in range(count()))


def detect() -> Detected:
    """Look at this machine and the installed llama.cpp (imports llama_cpp)."""
    from slmchat.core.llama_api import llama_cpp

    try:
        backends = _ggml_backend_names()
    except (AttributeError, OSError, ImportError):  # an unusual build: fall back to the flag
        log.warning("could not list ggml backends", exc_info=True)
        backends = ()
    return Detected(
        gpu_offload=bool(llama_cpp.llama_supports_gpu_offload()),
        backends=backends,
        cpu_has_amx=cpu_has_amx(_read_cpuinfo()),
        machine=hardware.detect_machine(),
    )


def decide(config: EngineConfig, detected: Detected, shape: hardware.ModelShape) -> Resolved:
    """Resolve every `None` in `config` from the facts; explicit choices win.

    n_ctx = min(the user's setting, the trained context, what fits): always explicit, never 0
    ("from the model" can mean gigabytes). Raises NotEnoughMemory when even the smallest
    context does not fit.
    """
    accelerators = [name for name in detected.backends if name not in hardware.HOST_BACKENDS]
    offload = detected.gpu_offload and bool(accelerators)
    n_gpu_layers = config.n_gpu_layers if config.n_gpu_layers is not None else (-1 if offload else 0)
    if config.use_extra_bufts is not None:
        extra_bufts = config.use_extra_bufts
    else:  # llama.cpp's AMX bug: repacked weights crash on the first multi-token batch
        extra_bufts = not detected.cpu_has_amx
    n_ctx = hardware.max_context_that_fits(shape, detected.machine, wanted=max(1, config.n_ctx))
    on_gpu = offload and n_gpu_layers != 0
    return Resolved(
        n_ctx=max(1, n_ctx),
        n_threads=config.n_threads or hardware.decode_threads(detected.machine.physical_cores),
        n_threads_batch=config.n_threads or detected.machine.physical_cores,
        n_gpu_layers=n_gpu_layers,
        use_extra_bufts=extra_bufts,
        backend=accelerators[0] if on_gpu else "CPU",
        # hardware.CPU_UBATCH says why the CPU runs without flash attention, with q8_0 keys;
        # on a GPU llama.cpp's defaults are the fast ones.
        flash_attn=config.flash_attn if config.flash_attn is not None else (None if on_gpu else False),
        key_cache_type="f16" if on_gpu else hardware.key_cache_type(shape),
        n_ubatch=hardware.GPU_UBATCH if on_gpu else hardware.CPU_UBATCH,
    )


def memory_cap(shape: hardware.ModelShape, n_ctx: int, total_ram: int) -> int:
    """The most RAM the engine process may use before it is stopped as a runaway.

    Twice hardware's estimate at this context plus headroom; never more than 90 % of the
    machine, so a bomb is stopped before swap.
    """
    expected = hardware.estimate_memory(shape, n_ctx).total
    return min(int(total_ram * _CAP_SHARE_OF_RAM), expected * 2 + _CAP_HEADROOM)


def model_params(resolved: Resolved) -> Any:
    """llama.cpp's `llama_model_params` for `resolved`, built per call (no global patching)."""
    from slmchat.core.llama_api import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = resolved.n_gpu_layers
    params.use_extra_bufts = resolved.use_extra_bufts
    return params


_CACHE_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0"}


def context_params(resolved: Resolved, n_batch: int = 512) -> Any:
    """llama.cpp's `llama_context_params`: explicit n_ctx, threads for prompt and decode, and
    the attention plan `decide` chose (flash attention, key cache type, ubatch)."""
    from slmchat.core.llama_api import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_ctx = resolved.n_ctx
    params.n_batch = min(n_batch, resolved.n_ctx)
    params.n_ubatch = min(resolved.n_ubatch, params.n_batch)
    params.flash_attn_type = {None: llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO,
                              True: llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              False: llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}[resolved.flash_attn]
    params.type_k = getattr(llama_cpp, _CACHE_TYPES[resolved.key_cache_type])
    params.n_threads = resolved.n_threads
    params.n_threads_batch = resolved.n_threads_batch
    params.no_perf = False  # the prompt-eval counters prove KV reuse
    # Sliding-window layers (Gemma 2 and 3) at full size: a window-sized cache drops positions
    # that left the window, and then a regenerate or an edit further back than the window (past
    # ~256 tokens of reply on Gemma 3) must evaluate the whole prompt again (rollback.py detects
    # it). Cost, measured (benchmarks/swa_cache.py, Gemma 3 270M): 55 MiB of KV cache instead of
    # 18 at 4096 tokens of context, 441 instead of 82 at 32768; none for Gemma 2 at 4096 tokens,
    # whose window is 4096. hardware.kv_cache_bytes counts every layer at full size accordingly.
    params.swa_full = True
    return params
