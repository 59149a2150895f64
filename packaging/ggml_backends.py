"""Register a portable llama.cpp's CPU variants from the folder they ship in, and say which one
this CPU got.

A portable llama.cpp (built with GGML_BACKEND_DL and GGML_CPU_ALL_VARIANTS) keeps its CPU code in
one shared library per instruction-set level, libggml-cpu-x64.so up to libggml-cpu-zen4.so; ggml
scores each against the running CPU and keeps the best. `llama_backend_init` looks for them only
next to the executable and in the current folder, so a bundle (where they sit in
`_internal/llama_cpp/lib`) or a virtualenv must name the folder itself, before anything calls
`llama_backend_init`. A native build (one libggml-cpu.so linked in) needs none of this.

Standard library only: the launcher imports this before anything else.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

VARIANT_GLOB = "libggml-cpu-*.so"
_MAPPED_VARIANT = re.compile(r"/libggml-cpu-([\w.]+)\.so")


def has_cpu_variants(lib_dir: Path) -> bool:
    return any(lib_dir.glob(VARIANT_GLOB))


def _libggml(lib_dir: Path) -> ctypes.CDLL:
    """ggml's registry library under the name libllama.so asks for (`libggml.so.0`), so this is
    the very copy llama.cpp will use even where the symlinks became copies."""
    for name in ("libggml.so.0", "libggml.so"):
        if (lib_dir / name).is_file():
            return ctypes.CDLL(str(lib_dir / name), mode=ctypes.RTLD_GLOBAL)
    raise FileNotFoundError(f"no libggml.so in {lib_dir}")


def load_backends(lib_dir: Path, variants_dir: Path | None = None) -> str | None:
    """Register the ggml backends in `variants_dir` (default: `lib_dir`, as in the bundle; a
    wheel installs them elsewhere) with the libggml in `lib_dir`, once per process. Returns
    the CPU variant chosen, or None when there are no variants (a native build: nothing to do)."""
    variants_dir = variants_dir or lib_dir
    if not has_cpu_variants(variants_dir):
        return None
    ggml = _libggml(lib_dir)
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() == 0:
        ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
        ggml.ggml_backend_load_all_from_path(str(variants_dir).encode())
    return chosen_cpu_variant()


def chosen_cpu_variant() -> str | None:
    """The libggml-cpu-<variant>.so mapped in this process: ggml opens each variant to score it,
    closes them, and keeps only the best one loaded."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    found = _MAPPED_VARIANT.search(maps)
    return found.group(1) if found else None
