"""How llama.cpp is run: decisions over detected facts (CUDA, Metal, AMX, RAM) and the real detection."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import llama_cpp
import psutil
import pytest

from slmchat.core.engine import backend
from slmchat.core.engine.backend import Detected, Resolved, decide
from slmchat.core.errors import NotEnoughMemory
from slmchat.core.generation import EngineConfig
from slmchat.core.gguf.check import GGUFInfo, read_gguf
from slmchat.core.models import hardware

GIB = 1024**3
LAPTOP = hardware.Machine(total_ram=32 * GIB, available_ram=16 * GIB, physical_cores=8)
CPU_ONLY = Detected(gpu_offload=False, backends=("CPU",), cpu_has_amx=False, machine=LAPTOP)
CUDA = Detected(gpu_offload=True, backends=("CUDA", "CPU"), cpu_has_amx=False, machine=dataclasses.replace(
    LAPTOP, backend=hardware.Backend.CUDA, gpus=(hardware.GPU("RTX", vram_total=8 * GIB),)))
METAL = Detected(gpu_offload=True, backends=("Metal", "BLAS", "CPU"), cpu_has_amx=False,
                 machine=dataclasses.replace(LAPTOP, physical_cores=10))
XEON_AMX = Detected(gpu_offload=False, backends=("CPU",), cpu_has_amx=True, machine=hardware.Machine(
    total_ram=128 * GIB, available_ram=64 * GIB, physical_cores=32))


@pytest.fixture(scope="module")
def smollm2(smollm2_path: Path) -> GGUFInfo:
    """SmolLM2-135M's real shape (8192 trained context), as the GGUF check reads it."""
    return read_gguf(smollm2_path)


def config(**overrides: object) -> EngineConfig:
    return EngineConfig(model_path=Path("model.gguf"), **overrides)  # type: ignore[arg-type]


def test_cuda_build_offloads_every_layer(smollm2: GGUFInfo) -> None:
    resolved = decide(config(), CUDA, smollm2)
    assert (resolved.n_gpu_layers, resolved.backend) == (-1, "CUDA")


def test_metal_build_offloads_every_layer(smollm2: GGUFInfo) -> None:
    resolved = decide(config(), METAL, smollm2)
    assert (resolved.n_gpu_layers, resolved.backend) == (-1, "Metal")


def test_cpu_only_build_offloads_nothing(smollm2: GGUFInfo) -> None:
    resolved = decide(config(), CPU_ONLY, smollm2)
    assert (resolved.n_gpu_layers, resolved.backend) == (0, "CPU")


def test_user_can_keep_a_gpu_build_on_the_cpu(smollm2: GGUFInfo) -> None:
    resolved = decide(config(n_gpu_layers=0), CUDA, smollm2)
    assert (resolved.n_gpu_layers, resolved.backend) == (0, "CPU")


def test_the_cpu_attends_without_flash_attention_over_q8_keys_in_small_ubatches(smollm2: GGUFInfo) -> None:
    """Measured faster on the CPU from a few hundred cached tokens on (hardware.CPU_UBATCH)."""
    for resolved in (decide(config(), CPU_ONLY, smollm2), decide(config(n_gpu_layers=0), CUDA, smollm2)):
        assert (resolved.flash_attn, resolved.key_cache_type, resolved.n_ubatch) == (False, "q8_0", 128)


def test_an_explicit_flash_attention_choice_wins_on_any_backend(smollm2: GGUFInfo) -> None:
    """Speculative decoding needs it on the CPU (a batch's logits equal one token's only then)."""
    for detected in (CPU_ONLY, CUDA, METAL):
        assert decide(config(flash_attn=True), detected, smollm2).flash_attn is True
        assert decide(config(flash_attn=False), detected, smollm2).flash_attn is False


def test_a_gpu_keeps_llama_cpps_flash_attention_and_f16_cache(smollm2: GGUFInfo) -> None:
    for detected in (CUDA, METAL):
        resolved = decide(config(), detected, smollm2)
        assert (resolved.flash_attn, resolved.key_cache_type, resolved.n_ubatch) == (None, "f16", 512)
        params = backend.context_params(resolved)  # None: llama.cpp turns it on where the device can
        assert params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO


def test_a_head_that_is_not_whole_q8_0_blocks_keeps_f16_keys_on_the_cpu(smollm2: GGUFInfo) -> None:
    phi2_like = dataclasses.replace(smollm2, key_length=80, value_length=80)
    assert decide(config(), CPU_ONLY, phi2_like).key_cache_type == "f16"


def test_replies_leave_a_core_free_prompts_use_all_and_the_user_can_set_both(smollm2: GGUFInfo) -> None:
    resolved = decide(config(), CPU_ONLY, smollm2)
    assert (resolved.n_threads, resolved.n_threads_batch) == (7, 8)
    two_cores = dataclasses.replace(CPU_ONLY, machine=dataclasses.replace(LAPTOP, physical_cores=2))
    resolved = decide(config(), two_cores, smollm2)
    assert (resolved.n_threads, resolved.n_threads_batch) == (1, 2)
    one_core = dataclasses.replace(CPU_ONLY, machine=dataclasses.replace(LAPTOP, physical_cores=1))
    assert decide(config(), one_core, smollm2).n_threads == 1
    resolved = decide(config(n_threads=3), CPU_ONLY, smollm2)
    assert (resolved.n_threads, resolved.n_threads_batch) == (3, 3)


def test_extra_buffer_types_are_off_on_amx_cpus_only(smollm2: GGUFInfo) -> None:
    assert decide(config(), XEON_AMX, smollm2).use_extra_bufts is False
    assert decide(config(), CPU_ONLY, smollm2).use_extra_bufts is True


def test_extra_buffer_types_setting_wins_over_detection(smollm2: GGUFInfo) -> None:
    assert decide(config(use_extra_bufts=True), XEON_AMX, smollm2).use_extra_bufts is True
    assert decide(config(use_extra_bufts=False), CPU_ONLY, smollm2).use_extra_bufts is False


def test_context_is_the_users_choice_when_it_fits(smollm2: GGUFInfo) -> None:
    assert decide(config(n_ctx=4096), CPU_ONLY, smollm2).n_ctx == 4096


def test_context_never_exceeds_the_trained_context(smollm2: GGUFInfo) -> None:
    assert decide(config(n_ctx=100_000), CPU_ONLY, smollm2).n_ctx == 8192


def test_context_is_what_hardwares_estimate_says_fits(smollm2: GGUFInfo) -> None:
    # A file claiming a million-token context on a small machine: llama.cpp's "n_ctx=0" would
    # allocate it all. One estimate decides, the same one the model manager shows.
    bomb = dataclasses.replace(smollm2, context_length=1 << 20)
    small = hardware.Machine(total_ram=4 * GIB, available_ram=2 * GIB, physical_cores=2)
    machine = dataclasses.replace(CPU_ONLY, machine=small)
    n_ctx = decide(config(n_ctx=1 << 20), machine, bomb).n_ctx
    assert n_ctx == hardware.max_context_that_fits(bomb, small, wanted=1 << 20)
    assert 512 <= n_ctx < 1 << 20
    assert hardware.estimate_memory(bomb, n_ctx).total <= small.available_ram


def test_context_is_never_zero_even_without_a_trained_length(smollm2: GGUFInfo) -> None:
    unknown = dataclasses.replace(smollm2, context_length=0)
    assert decide(config(n_ctx=2048), CPU_ONLY, unknown).n_ctx == 2048


def test_a_model_that_cannot_fit_at_all_is_refused(smollm2: GGUFInfo) -> None:
    tiny_machine = hardware.Machine(total_ram=GIB // 4, available_ram=GIB // 8, physical_cores=1)
    with pytest.raises(NotEnoughMemory):
        decide(config(), dataclasses.replace(CPU_ONLY, machine=tiny_machine), smollm2)


def test_memory_cap_stays_below_the_machine_and_above_the_estimate(smollm2: GGUFInfo) -> None:
    cap = backend.memory_cap(smollm2, 4096, total_ram=8 * GIB)
    assert hardware.estimate_memory(smollm2, 4096).total < cap <= 0.9 * 8 * GIB


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ("fpu vme avx512f amx_bf16 amx_tile amx_int8 avx512_fp16", True),
        ("fpu vme avx2 avx512f avx512_vnni", False),
    ],
)
def test_amx_is_read_from_cpu_flags(flags: str, expected: bool) -> None:
    cpuinfo = f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n"
    assert backend.cpu_has_amx(cpuinfo) is expected


def test_detection_on_this_machine_agrees_with_llama_cpp_and_the_os() -> None:
    """True on any machine the suite runs on (CPU, CUDA or Metal build; with or without AMX): each
    detected fact is compared with what llama.cpp or the operating system says on its own."""
    detected = backend.detect()
    assert "CPU" in detected.backends
    assert detected.gpu_offload == llama_cpp.llama_supports_gpu_offload()
    assert detected.machine.physical_cores == psutil.cpu_count(logical=False)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():  # Linux; elsewhere AMX is not looked for (no AMX Macs; Windows reads no cpuinfo)
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
        assert detected.cpu_has_amx == ("amx_tile" in flags.split())


def test_model_params_are_built_per_call_without_touching_the_defaults() -> None:
    off = Resolved(n_ctx=512, n_threads=2, n_threads_batch=2, n_gpu_layers=0, use_extra_bufts=False, backend="CPU")
    params = backend.model_params(off)
    assert params.use_extra_bufts is False and params.n_gpu_layers == 0
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_context_params_are_explicit() -> None:
    resolved = Resolved(n_ctx=1536, n_threads=1, n_threads_batch=2, n_gpu_layers=0, use_extra_bufts=True,
                        backend="CPU")
    params = backend.context_params(resolved)
    assert (params.n_ctx, params.n_threads, params.n_threads_batch) == (1536, 1, 2)
    assert params.no_perf is False
    assert params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    assert (params.type_k, params.type_v) == (llama_cpp.GGML_TYPE_Q8_0, llama_cpp.GGML_TYPE_F16)
    assert (params.n_batch, params.n_ubatch) == (512, 128)
