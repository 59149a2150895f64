"""How llama.cpp is run: decisions over detected facts (CUDA, Metal, AMX, RAM) and the real detection."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import psutil
import pytest

from slmchat.core import backend
from slmchat.core.backend import Detected, ModelFacts, Resolved, decide
from slmchat.core.generation import EngineConfig
from slmchat.core.gguf_check import read_gguf

GIB = 1024**3
CPU_ONLY = Detected(gpu_offload=False, backends=("CPU",), cpu_has_amx=False, physical_cores=8,
                    available_ram=16 * GIB)
CUDA = Detected(gpu_offload=True, backends=("CUDA", "CPU"), cpu_has_amx=False, physical_cores=8,
                available_ram=16 * GIB)
METAL = Detected(gpu_offload=True, backends=("Metal", "BLAS", "CPU"), cpu_has_amx=False,
                 physical_cores=10, available_ram=16 * GIB)
XEON_AMX = Detected(gpu_offload=False, backends=("CPU",), cpu_has_amx=True, physical_cores=32,
                    available_ram=64 * GIB)
SMALL_MODEL = ModelFacts(file_size=100_000_000, trained_ctx=8192, kv_bytes_per_token=23_040)


def config(**overrides: object) -> EngineConfig:
    return EngineConfig(model_path=Path("model.gguf"), **overrides)  # type: ignore[arg-type]


def test_cuda_build_offloads_every_layer() -> None:
    resolved = decide(config(), CUDA, SMALL_MODEL)
    assert (resolved.n_gpu_layers, resolved.backend) == (-1, "CUDA")


def test_metal_build_offloads_every_layer() -> None:
    resolved = decide(config(), METAL, SMALL_MODEL)
    assert (resolved.n_gpu_layers, resolved.backend) == (-1, "Metal")


def test_cpu_only_build_offloads_nothing() -> None:
    resolved = decide(config(), CPU_ONLY, SMALL_MODEL)
    assert (resolved.n_gpu_layers, resolved.backend) == (0, "CPU")


def test_user_can_keep_a_gpu_build_on_the_cpu() -> None:
    resolved = decide(config(n_gpu_layers=0), CUDA, SMALL_MODEL)
    assert (resolved.n_gpu_layers, resolved.backend) == (0, "CPU")


def test_threads_default_to_physical_cores_and_can_be_set() -> None:
    assert decide(config(), CPU_ONLY, SMALL_MODEL).n_threads == 8
    assert decide(config(n_threads=3), CPU_ONLY, SMALL_MODEL).n_threads == 3


def test_extra_buffer_types_are_off_on_amx_cpus_only() -> None:
    assert decide(config(), XEON_AMX, SMALL_MODEL).use_extra_bufts is False
    assert decide(config(), CPU_ONLY, SMALL_MODEL).use_extra_bufts is True


def test_extra_buffer_types_setting_wins_over_detection() -> None:
    assert decide(config(use_extra_bufts=True), XEON_AMX, SMALL_MODEL).use_extra_bufts is True
    assert decide(config(use_extra_bufts=False), CPU_ONLY, SMALL_MODEL).use_extra_bufts is False


def test_context_is_the_users_choice_when_it_fits() -> None:
    assert decide(config(n_ctx=4096), CPU_ONLY, SMALL_MODEL).n_ctx == 4096


def test_context_never_exceeds_the_trained_context() -> None:
    assert decide(config(n_ctx=100_000), CPU_ONLY, SMALL_MODEL).n_ctx == 8192


def test_huge_trained_context_is_clamped_to_what_fits_in_ram() -> None:
    # A 98 MB file claiming a million-token context: llama.cpp's "n_ctx=0" would allocate it all.
    bomb = ModelFacts(file_size=98_000_000, trained_ctx=1 << 20, kv_bytes_per_token=1 << 20)
    machine = Detected(gpu_offload=False, backends=("CPU",), cpu_has_amx=False, physical_cores=2,
                       available_ram=4 * GIB)
    resolved = decide(config(n_ctx=1 << 20), machine, bomb)
    kv_bytes = resolved.n_ctx * bomb.kv_bytes_per_token
    assert 0 < resolved.n_ctx and kv_bytes + bomb.file_size < machine.available_ram


def test_context_is_never_zero_even_without_a_trained_length() -> None:
    unknown = ModelFacts(file_size=1, trained_ctx=0, kv_bytes_per_token=0)
    assert decide(config(n_ctx=2048), CPU_ONLY, unknown).n_ctx == 2048


def test_kv_size_per_token_of_smollm2(smollm2_path: Path) -> None:
    # SmolLM2-135M (model card): 30 layers, 3 KV heads of 64 dims, F16 K and V.
    facts = ModelFacts.of(read_gguf(smollm2_path))
    assert facts.kv_bytes_per_token == 30 * 3 * (64 + 64) * 2
    assert facts.trained_ctx == 8192


def test_memory_cap_stays_below_the_machine() -> None:
    resolved = Resolved(n_ctx=4096, n_threads=2, n_gpu_layers=0, use_extra_bufts=True, backend="CPU")
    cap = backend.memory_cap(SMALL_MODEL, resolved, total_ram=8 * GIB)
    assert SMALL_MODEL.file_size + 4096 * SMALL_MODEL.kv_bytes_per_token < cap <= 0.9 * 8 * GIB


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


def test_detection_on_this_machine() -> None:
    detected = backend.detect()
    assert "CPU" in detected.backends
    assert detected.gpu_offload == llama_cpp.llama_supports_gpu_offload()
    assert detected.physical_cores == psutil.cpu_count(logical=False)
    flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), "")
    assert detected.cpu_has_amx == ("amx_tile" in flags.split())


def test_model_params_are_built_per_call_without_touching_the_defaults() -> None:
    off = Resolved(n_ctx=512, n_threads=2, n_gpu_layers=0, use_extra_bufts=False, backend="CPU")
    params = backend.model_params(off)
    assert params.use_extra_bufts is False and params.n_gpu_layers == 0
    assert llama_cpp.llama_model_default_params().use_extra_bufts is True


def test_context_params_are_explicit() -> None:
    resolved = Resolved(n_ctx=1536, n_threads=2, n_gpu_layers=0, use_extra_bufts=True, backend="CPU")
    params = backend.context_params(resolved)
    assert (params.n_ctx, params.n_threads, params.n_threads_batch) == (1536, 2, 2)
    assert params.no_perf is False
