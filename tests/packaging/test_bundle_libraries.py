"""A built Linux bundle carries every shared library it needs, except a short list every desktop
has: glibc, the graphics stack (OpenGL/EGL, libdrm), libxcb and Wayland's client libraries,
which must match the system's drivers and display server (the same list PyInstaller leaves out
on purpose). Anything else missing means "works on the build machine, not on a fresh desktop".

Reads each ELF file's NEEDED entries itself (no readelf needed). Skipped until a bundle is built
(`bash packaging/build_linux.sh --portable`; CI runs this after building); SLMCHAT_BUNDLE
names another bundle folder."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = [ROOT / "build" / "dist-portable" / "slmchat", ROOT / "build" / "dist" / "slmchat"]
FROM_THE_SYSTEM = re.compile(
    r"ld-linux-x86-64\.so\.2|lib(c|m|dl|pthread|rt|util|resolv|anl)\.so\.\d+"  # glibc
    r"|lib(E?GL|GLX|OpenGL|GLdispatch|GLESv2)\.so\.\d+|libdrm\.so\.2"       # graphics stack (libglvnd)
    r"|libxcb\.so\.1|libwayland-(client|cursor|egl)\.so\.\d+"              # display server
    r"|libstdc\+\+\.so\.6|libgcc_s\.so\.1|libexpat\.so\.1")              # C++ runtime, expat (slmchat.spec)
# Qt loads its GTK theme plugin only on a GTK desktop, which has GTK; elsewhere it skips it.
ONLY_WHERE_PRESENT = {"libqgtk3.so"}
# The oldest systems the bundle is for: Ubuntu 22.04 LTS (glibc 2.35, GCC 12's libstdc++).
OLDEST_GLIBC, OLDEST_GLIBCXX = (2, 35), (3, 4, 30)


def built_bundle() -> Path:
    chosen = os.environ.get("SLMCHAT_BUNDLE")
    candidates = [Path(chosen)] if chosen else BUNDLES
    for bundle in candidates:
        if (bundle / "slmchat").is_file():
            return bundle
    pytest.skip("no bundle built yet: run `bash packaging/build_linux.sh --portable` (CI does, then runs this)")


def needed_libraries(path: Path) -> list[str] | None:
    """DT_NEEDED names of a 64-bit little-endian ELF file, or None when `path` is not one."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return None
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    needed = []
    for _name, kind, _flags, _addr, offset, size, link, _info, _align, entsize in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strings = sections[link][4]
        for entry in range(offset, offset + size, entsize):
            tag, value = struct.unpack_from("<qQ", data, entry)
            if tag == 1:  # DT_NEEDED
                needed.append(data[strings + value:data.index(b"\0", strings + value)].decode())
    return needed


def test_every_library_the_bundle_needs_is_inside_it_or_on_every_desktop() -> None:
    bundle = built_bundle()
    files = [path for path in bundle.rglob("*") if path.is_file() and not path.is_symlink()]
    names = {path.name for path in bundle.rglob("*")}
    unresolved: dict[str, list[str]] = {}
    elf_files = 0
    for path in files:
        needed = needed_libraries(path) if path.suffix in {".so", ""} or ".so." in path.name else None
        if needed is None or path.name in ONLY_WHERE_PRESENT:
            continue
        elf_files += 1
        for name in needed:
            if name not in names and not FROM_THE_SYSTEM.fullmatch(name):
                unresolved.setdefault(name, []).append(str(path.relative_to(bundle)))
    assert elf_files > 50, "too few ELF files found: is this a bundle?"
    assert not unresolved, f"needed, not in the bundle, not on every desktop: {unresolved}"


def newest_version_needed(bundle: Path, prefix: bytes) -> tuple[tuple[int, ...], str]:
    """The newest `GLIBC_x.y` (or `GLIBCXX_...`) symbol version any ELF file in the bundle names,
    and that file."""
    newest: tuple[tuple[int, ...], str] = ((0,), "")
    pattern = re.compile(re.escape(prefix) + rb"_(\d+(?:\.\d+)+)\0")
    for path in bundle.rglob("*.so*"):
        if path.is_file() and not path.is_symlink():
            for found in pattern.findall(path.read_bytes()):
                version = tuple(int(part) for part in found.decode().split("."))
                newest = max(newest, (version, str(path.relative_to(bundle))))
    return newest


def test_the_bundle_runs_on_ubuntu_22_04_and_newer() -> None:
    bundle = built_bundle()
    glibc, glibc_file = newest_version_needed(bundle, b"GLIBC")
    glibcxx, glibcxx_file = newest_version_needed(bundle, b"GLIBCXX")
    assert glibc <= OLDEST_GLIBC, f"{glibc_file} needs glibc {glibc}"
    assert glibcxx <= OLDEST_GLIBCXX, f"{glibcxx_file} needs libstdc++ GLIBCXX {glibcxx}"


def test_the_bundle_carries_the_xcb_libraries_fresh_desktops_lack() -> None:
    """The list in docs/ARCHITECTURE.md ("Facts the code rests on"), less the graphics stack."""
    bundle = built_bundle()
    for soname in ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-image.so.0",
                   "libxcb-render-util.so.0", "libxcb-shape.so.0", "libxcb-xkb.so.1", "libxkbcommon-x11.so.0",
                   "libfontconfig.so.1", "libdbus-1.so.3"):
        assert any(bundle.rglob(soname)), f"{soname} is not in the bundle"


def test_a_portable_bundle_carries_llama_cpps_cpu_variants_from_the_oldest_cpu_up() -> None:
    bundle = built_bundle()
    if any(bundle.rglob("libggml-cpu.so")):
        pytest.skip("a native bundle (build_linux.sh without --portable): one CPU backend, no variants")
    variants = {path.name for path in bundle.rglob("libggml-cpu-*.so")}
    assert {"libggml-cpu-x64.so", "libggml-cpu-sse42.so", "libggml-cpu-haswell.so"} <= variants, variants
