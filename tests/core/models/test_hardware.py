"""Will it fit: detection on this machine, the memory estimate against an independent
calculation from the real GGUFs, and labels for machines we do not have (built by hand)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from slmchat.core.errors import NotEnoughMemory
from slmchat.core.gguf.check import read_gguf
from slmchat.core.models import hardware as hw
from slmchat.core.models.catalog import load_catalog
from slmchat.core.models.hardware import GIB, GPU, Backend, FitLabel, Machine

NVIDIA_SMI_OUTPUT = """\
NVIDIA GeForce RTX 3070 Laptop GPU, 8192, 623
NVIDIA A100-SXM4-40GB, 40960, 0
"""
CUDA_SYSTEM_INFO = (
    "CUDA : ARCHS = 500,610,700,750,800,860,890 | FORCE_MMQ = 1 | USE_GRAPHS = 1 | "
    "PEER_MAX_BATCH_SIZE = 128 | CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | "
    "FMA = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 | "
)
METAL_SYSTEM_INFO = "Metal : EMBED_LIBRARY = 1 | CPU : NEON = 1 | ARM_FMA = 1 | FP16_VA = 1 | DOTPROD = 1 | ACCELERATE = 1 | REPACK = 1 | "

# Typical machines of our users, built by hand: (total RAM, free RAM) in GiB.
LAPTOP_8GB = Machine(total_ram=8 * GIB, available_ram=5 * GIB, physical_cores=4)
NETBOOK_2GB = Machine(total_ram=2 * GIB, available_ram=int(0.8 * GIB), physical_cores=2)
DESKTOP_NVIDIA = Machine(
    total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=8, backend=Backend.CUDA,
    gpus=(GPU("NVIDIA GeForce RTX 3070", vram_total=8 * GIB, vram_used=int(0.5 * GIB)),),
)
MAC_16GB = Machine(
    total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=8, backend=Backend.METAL,
    gpus=(GPU("Apple GPU", vram_total=hw.apple_gpu_budget(16 * GIB), unified=True),),
    system="Darwin", arch="arm64",
)


@pytest.fixture(scope="module")
def catalog_shapes():
    catalog = load_catalog()
    return {model_id: catalog.get(model_id).model_shape() for model_id in
            ("gemma-2-9b-it", "phi-4", "qwen2-7b-instruct", "llama-3.2-1b-instruct",
             "llama-3.2-3b-instruct", "phi-3.5-mini-instruct")}


# --- detection ----------------------------------------------------------------------------
def test_nvidia_smi_output_is_parsed_into_gpus_with_vram_in_bytes() -> None:
    gpus = hw.parse_nvidia_smi(NVIDIA_SMI_OUTPUT)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 3070 Laptop GPU", "NVIDIA A100-SXM4-40GB"]
    assert gpus[0].vram_total == 8192 * 1024**2 and gpus[0].vram_used == 623 * 1024**2
    assert gpus[1].vram_free == 40960 * 1024**2


def test_nvidia_smi_lines_that_are_not_numbers_are_skipped_not_guessed() -> None:
    text = "NVIDIA GeForce GTX 1050, [N/A], [N/A]\nNVIDIA-SMI has failed\n\nTesla T4, 15360, 10\n"
    assert [g.name for g in hw.parse_nvidia_smi(text)] == ["Tesla T4"]


def test_llama_cpp_backend_names_are_read_from_its_system_info() -> None:
    assert hw.parse_system_info(CUDA_SYSTEM_INFO) == ("CUDA", "CPU")
    assert hw.parse_system_info(METAL_SYSTEM_INFO) == ("Metal", "CPU")
    assert hw.backend_from_names(("CUDA", "CPU"), gpu_offload=True) is Backend.CUDA
    assert hw.backend_from_names(("Metal", "CPU"), gpu_offload=True) is Backend.METAL
    # A build that names a GPU backend but cannot offload is a CPU build for our purposes.
    assert hw.backend_from_names(("CUDA", "CPU"), gpu_offload=False) is Backend.CPU


def test_detection_on_this_machine_reports_its_ram_cores_and_the_backend_llama_cpp_names() -> None:
    """Holds on a CPU, CUDA or Metal build alike: the backend is the one llama.cpp reports itself."""
    import llama_cpp
    import psutil

    machine = hw.detect_machine()
    assert machine.total_ram == psutil.virtual_memory().total
    assert 0 < machine.available_ram <= machine.total_ram
    assert machine.physical_cores >= 1
    assert "CPU" in machine.backend_names  # llama.cpp's own word for its host backend
    offload = bool(llama_cpp.llama_supports_gpu_offload())
    assert machine.gpu_offload == offload
    assert machine.backend is hw.backend_from_names(
        hw.parse_system_info(llama_cpp.llama_print_system_info().decode()), offload)


def test_the_gui_way_of_detecting_leaves_llama_cpp_unloaded() -> None:
    # A fresh interpreter: this test process imported llama_cpp long ago.
    script = (
        "import sys, json\n"
        "from slmchat.core.models.hardware import detect_machine\n"
        "machine = detect_machine(probe_backend=False)\n"
        "print(json.dumps([machine.backend.value, list(machine.backend_names), 'llama_cpp' in sys.modules]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    backend, names, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded is False
    probed = hw.detect_machine()  # llama.cpp asked itself, in this process
    assert backend == probed.backend.value
    assert set(names) <= {*probed.backend_names, "BLAS", "RPC"} and "CPU" in names


@pytest.mark.parametrize(
    ("files", "names", "backend"),
    [
        (["libggml-base.so", "libggml-cpu.so", "libggml-cuda.so", "libllama.so"], ("CUDA", "CPU"), Backend.CUDA),
        (["libggml-base.dylib", "libggml-metal.dylib", "libggml-cpu.dylib", "libggml-blas.dylib"],
         ("Metal", "CPU", "BLAS"), Backend.METAL),
        (["ggml-base.dll", "ggml-cpu.dll", "ggml-vulkan.dll", "llama.dll"], ("Vulkan", "CPU"), Backend.VULKAN),
        (["libggml-base.so", "libggml-cpu.so", "libggml.so", "libmtmd.so"], ("CPU",), Backend.CPU),
        (["libggml-base.so", "libggml-cpu-x64.so", "libggml-cpu-haswell.so", "libggml.so"], ("CPU",), Backend.CPU),
    ],
)
def test_llama_cpps_backend_is_read_from_its_library_files(
        files: list[str], names: tuple[str, ...], backend: Backend) -> None:
    assert hw.backend_from_library_files(files) == (backend, names)


def test_a_loaded_engines_backend_refines_the_machine() -> None:
    mac = Machine(total_ram=16 * GIB, available_ram=8 * GIB, physical_cores=8,
                  gpus=(GPU("Apple GPU", vram_total=10 * GIB, unified=True),), backend_names=("CPU",))
    assert not mac.gpu_offload
    metal = hw.with_engine_backend(mac, "Metal")
    assert metal.backend is Backend.METAL and metal.gpu_offload
    assert metal.backend_names == ("Metal", "CPU")
    assert hw.with_engine_backend(metal, "CPU").backend is Backend.CPU


# --- the estimate against an independent calculation ----------------------------------------
def _reader_int(reader: GGUFReader, key: str) -> int:
    field = reader.fields[key]
    return int(field.parts[field.data[0]][0])


@pytest.fixture(scope="module", params=["smollm2_path", "gemma_path"])
def independent(request: pytest.FixtureRequest) -> tuple[Path, int, int]:
    """(path, tensor bytes, KV bytes per cell) from the gguf package's own reader and type sizes.

    Parsed once per model: GGUFReader walks the whole vocabulary, which takes seconds.
    """
    path: Path = request.getfixturevalue(request.param)
    reader = GGUFReader(path)
    arch_field = reader.fields["general.architecture"]
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    n_layer = _reader_int(reader, f"{arch}.block_count")
    n_head = _reader_int(reader, f"{arch}.attention.head_count")
    n_head_kv = _reader_int(reader, f"{arch}.attention.head_count_kv")
    n_embd = _reader_int(reader, f"{arch}.embedding_length")
    key_len = (_reader_int(reader, f"{arch}.attention.key_length")
               if f"{arch}.attention.key_length" in reader.fields else n_embd // n_head)
    # The engine's CPU cache, for every layer: K in q8_0 blocks, V in f16.
    block_values, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType.Q8_0]
    key_bytes = key_len * block_bytes / block_values
    kv_per_cell = n_layer * n_head_kv * (key_bytes + key_len * np.dtype(np.float16).itemsize)
    return path, sum(int(t.n_bytes) for t in reader.tensors), kv_per_cell


@pytest.mark.slow
@pytest.mark.parametrize("n_ctx", [512, 4096])
def test_weights_and_kv_cache_match_a_calculation_from_the_gguf_package(
    independent: tuple[Path, int, int], n_ctx: int
) -> None:
    path, expected_weights, kv_per_cell = independent

    estimate = hw.estimate_memory(read_gguf(path), n_ctx)

    assert estimate.weights == expected_weights
    assert estimate.kv_cache == int(n_ctx * kv_per_cell)
    assert estimate.total > estimate.weights + estimate.kv_cache  # work space is never free


def test_a_longer_context_costs_more_and_q8_keys_shrink_the_cache(gemma_path: Path) -> None:
    info = read_gguf(gemma_path)
    small, large = hw.estimate_memory(info, 2048), hw.estimate_memory(info, 8192)
    assert large.kv_cache == 4 * small.kv_cache and large.total > small.total
    f16 = hw.kv_cache_bytes(info, 2048, "f16")
    assert small.kv_cache == pytest.approx(f16 * (34 / 32 + 2) / 4, rel=1e-6)  # q8_0 keys, f16 values
    assert small.gpu_kv_cache == f16  # a GPU run keeps llama.cpp's f16 keys
    assert small.gpu_total > small.weights + f16


def test_keys_are_cached_as_q8_0_only_where_a_head_is_whole_q8_0_blocks(smollm2_path: Path) -> None:
    info = read_gguf(smollm2_path)  # 64 values a head
    assert hw.key_cache_type(info) == "q8_0"
    phi2_like = dataclasses.replace(info, key_length=80, value_length=80)  # Phi-2, StableLM
    assert hw.key_cache_type(phi2_like) == "f16"
    assert hw.estimate_memory(phi2_like, 2048).kv_cache == hw.kv_cache_bytes(phi2_like, 2048, "f16")


# --- fit labels for machines we do not have ------------------------------------------------
def test_the_test_models_fit_everywhere_but_the_netbook_is_tight(smollm2_path: Path, gemma_path: Path) -> None:
    smollm2 = hw.estimate_memory(read_gguf(smollm2_path), 2048)
    for machine in (LAPTOP_8GB, DESKTOP_NVIDIA, MAC_16GB, NETBOOK_2GB):
        result = hw.fit(smollm2, machine)
        assert result.label is FitLabel.FITS, (machine, result.reason)
        assert "GB" in result.reason


def test_a_9b_model_on_each_machine(catalog_shapes) -> None:
    gemma9b = hw.estimate_memory(catalog_shapes["gemma-2-9b-it"], 4096)
    laptop = hw.fit(gemma9b, LAPTOP_8GB)
    assert laptop.label is FitLabel.WONT_FIT and "8.6 GB of RAM" in laptop.reason
    desktop = hw.fit(gemma9b, DESKTOP_NVIDIA)
    assert desktop.label is FitLabel.MAY_BE_SLOW and "RTX 3070" in desktop.reason
    mac = hw.fit(gemma9b, MAC_16GB)
    assert mac.label is FitLabel.FITS and "Mac" in mac.reason
    assert hw.fit(gemma9b, NETBOOK_2GB).label is FitLabel.WONT_FIT


def test_a_7b_model_fits_an_8gb_card_but_is_slow_on_a_cpu_only_machine(catalog_shapes) -> None:
    qwen7b = hw.estimate_memory(catalog_shapes["qwen2-7b-instruct"], 4096)
    assert hw.fit(qwen7b, DESKTOP_NVIDIA).label is FitLabel.FITS
    cpu_only = Machine(total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=8)
    slow = hw.fit(qwen7b, cpu_only)
    assert slow.label is FitLabel.MAY_BE_SLOW and "only about 3 words a second" in slow.reason


def test_a_busy_machine_asks_to_close_programs_rather_than_refusing(catalog_shapes) -> None:
    llama1b = hw.estimate_memory(catalog_shapes["llama-3.2-1b-instruct"], 4096)
    busy = Machine(total_ram=8 * GIB, available_ram=1 * GIB, physical_cores=4)
    result = hw.fit(llama1b, busy)
    assert result.label is FitLabel.MAY_BE_SLOW and "Close other programs" in result.reason


# --- will it be fast enough: the CPU speed estimate ------------------------------------------
# The CPU-only machines of the speed rules: this development machine and a workstation.
TWO_CORE_CPU = Machine(total_ram=24 * GIB, available_ram=20 * GIB, physical_cores=2)
SIXTEEN_CORE_CPU = Machine(total_ram=24 * GIB, available_ram=20 * GIB, physical_cores=16)
CUDA_ON_TWO_CORES = dataclasses.replace(DESKTOP_NVIDIA, physical_cores=2)
MAC_ON_TWO_CORES = dataclasses.replace(MAC_16GB, physical_cores=2)


def test_the_speed_estimate_matches_the_measured_decode_speed_of_the_real_smollm2(smollm2_path: Path) -> None:
    """docs/BENCHMARKS.md: on this 2-core machine the app decodes on one thread at 0.98 of
    llama-bench, which decodes this file at 129 tok/s with 500 cached tokens and 105 with 1,600:
    ~98 with 2,048, half the 4,096-token context the estimate averages over."""
    estimate = hw.estimate_memory(read_gguf(smollm2_path), 4096)
    assert 0.85 * 98 <= hw.cpu_tokens_per_second(estimate, physical_cores=2) <= 98


def test_a_model_that_fits_in_ram_but_writes_slower_than_people_read_may_be_slow(catalog_shapes) -> None:
    phi35 = hw.estimate_memory(catalog_shapes["phi-3.5-mini-instruct"], 4096)
    assert phi35.total < TWO_CORE_CPU.available_ram / 2  # memory is not the problem
    slow = hw.fit(phi35, TWO_CORE_CPU)
    assert slow.label is FitLabel.MAY_BE_SLOW
    assert slow.tokens_per_second < hw.MIN_CHAT_TOKENS_PER_SECOND
    words = round(slow.tokens_per_second * hw.WORDS_PER_TOKEN)
    assert f"your 2 processor cores it would write only about {words} words a second" in slow.reason


def test_a_small_model_fits_and_the_reason_says_how_fast_it_writes(catalog_shapes) -> None:
    llama1b = hw.fit(hw.estimate_memory(catalog_shapes["llama-3.2-1b-instruct"], 4096), TWO_CORE_CPU)
    assert llama1b.label is FitLabel.FITS
    assert llama1b.tokens_per_second >= hw.MIN_CHAT_TOKENS_PER_SECOND
    assert f"should write about {round(llama1b.tokens_per_second * 0.75)} words a second" in llama1b.reason


def test_more_cores_help_until_ram_bandwidth_is_the_limit(catalog_shapes) -> None:
    llama3b = hw.estimate_memory(catalog_shapes["llama-3.2-3b-instruct"], 4096)
    speeds = [hw.cpu_tokens_per_second(llama3b, cores) for cores in (1, 2, 3, 16, 64)]
    # 1 and 2 cores decode on one thread (a core stays free); 2 threads x 12 GB/s > 20 GB/s of RAM
    assert speeds[0] == speeds[1] < speeds[2] == speeds[3] == speeds[4]
    assert hw.fit(llama3b, TWO_CORE_CPU).label is FitLabel.MAY_BE_SLOW
    assert hw.fit(llama3b, SIXTEEN_CORE_CPU).label is FitLabel.FITS


def test_a_longer_conversation_reads_more_memory_per_token_so_it_writes_slower(catalog_shapes) -> None:
    phi35 = catalog_shapes["phi-3.5-mini-instruct"]
    short, long = (hw.cpu_tokens_per_second(hw.estimate_memory(phi35, n_ctx), 2) for n_ctx in (512, 16384))
    assert long < short


def test_a_model_fully_on_a_graphics_card_is_fast_however_few_cpu_cores(catalog_shapes) -> None:
    phi35 = hw.estimate_memory(catalog_shapes["phi-3.5-mini-instruct"], 4096)
    for machine in (CUDA_ON_TWO_CORES, MAC_ON_TWO_CORES):
        result = hw.fit(phi35, machine)
        assert result.label is FitLabel.FITS and result.tokens_per_second is None, machine


def test_a_gpu_build_without_a_detected_card_is_judged_as_a_cpu(catalog_shapes) -> None:
    phi35 = hw.estimate_memory(catalog_shapes["phi-3.5-mini-instruct"], 4096)
    no_card = dataclasses.replace(TWO_CORE_CPU, backend=Backend.VULKAN)
    assert hw.fit(phi35, no_card) == hw.fit(phi35, TWO_CORE_CPU)


def test_a_busy_and_slow_machine_names_both_problems(catalog_shapes) -> None:
    phi35 = hw.estimate_memory(catalog_shapes["phi-3.5-mini-instruct"], 4096)
    busy = dataclasses.replace(TWO_CORE_CPU, available_ram=2 * GIB)
    result = hw.fit(phi35, busy)
    assert result.label is FitLabel.MAY_BE_SLOW
    assert "Close other programs" in result.reason and "words a second" in result.reason


# --- the context that fits ----------------------------------------------------------------
def test_context_is_capped_by_the_trained_length(smollm2_path: Path) -> None:
    info = read_gguf(smollm2_path)
    assert hw.max_context_that_fits(info, LAPTOP_8GB, wanted=32768) == info.context_length == 8192
    assert hw.max_context_that_fits(info, LAPTOP_8GB, wanted=1000) == 1000


def test_context_shrinks_to_the_largest_that_keeps_the_model_fitting(catalog_shapes) -> None:
    phi4 = catalog_shapes["phi-4"]
    mac = MAC_16GB
    n_ctx = hw.max_context_that_fits(phi4, mac, wanted=16384)
    assert 512 <= n_ctx < 16384 and n_ctx % hw.CONTEXT_STEP == 0
    assert hw.fit(hw.estimate_memory(phi4, n_ctx), mac).label is FitLabel.FITS
    assert hw.fit(hw.estimate_memory(phi4, n_ctx + hw.CONTEXT_STEP), mac).label is not FitLabel.FITS


def test_a_slow_cpu_does_not_cut_the_context_the_user_asked_for(catalog_shapes) -> None:
    phi35 = catalog_shapes["phi-3.5-mini-instruct"]
    assert hw.fit(hw.estimate_memory(phi35, 512), TWO_CORE_CPU).label is FitLabel.MAY_BE_SLOW
    assert hw.max_context_that_fits(phi35, TWO_CORE_CPU, wanted=16384) == 16384


def test_a_model_that_fits_nowhere_raises_a_sentence_for_the_user(catalog_shapes) -> None:
    with pytest.raises(NotEnoughMemory, match="smaller model"):
        hw.max_context_that_fits(catalog_shapes["phi-4"], NETBOOK_2GB, wanted=4096)
