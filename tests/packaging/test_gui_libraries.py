"""packaging/gui_libraries.py: the launcher's check, before Qt starts, that the xcb platform
plugin can load, and the message naming what to install when it cannot.

The library with a missing dependency is real: compiled here against a library that is then
deleted, exactly the state of a bundle's libqxcb.so on a system without libxcb-cursor0."""

from __future__ import annotations

import ctypes.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "packaging"))
import gui_libraries  # noqa: E402  (the launcher's own module, next to launch.py)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ELF shared libraries")


@pytest.fixture
def library_needing_a_deleted_one(tmp_path: Path) -> Path:
    """libneedy.so, linked against libslmchat-gone.so.0 and libxcb-cursor-gone.so.0, both deleted."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler to build a test library")
    for name in ("slmchat-gone", "xcb-cursor-gone"):
        (tmp_path / f"{name}.c").write_text(f"int {name.replace('-', '_')}(void) {{ return 1; }}\n", encoding="utf-8")
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,lib{name}.so.0", "-o", str(tmp_path / f"lib{name}.so"),
                        str(tmp_path / f"{name}.c")], check=True)
    (tmp_path / "needy.c").write_text(
        "int slmchat_gone(void); int xcb_cursor_gone(void);\nint needy(void) { return slmchat_gone() + xcb_cursor_gone(); }\n",
        encoding="utf-8")
    needy = tmp_path / "libneedy.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(needy), str(tmp_path / "needy.c"), f"-L{tmp_path}",
                    "-lslmchat-gone", "-lxcb-cursor-gone"], check=True)
    for name in ("slmchat-gone", "xcb-cursor-gone"):
        (tmp_path / f"lib{name}.so").unlink()
    return needy


def test_every_missing_library_is_named_not_only_the_first_the_loader_meets(library_needing_a_deleted_one: Path) -> None:
    assert sorted(gui_libraries.missing_libraries(library_needing_a_deleted_one)) == [
        "libslmchat-gone.so.0", "libxcb-cursor-gone.so.0"]


def test_a_library_that_loads_has_nothing_missing() -> None:
    assert gui_libraries.missing_libraries(Path(ctypes.util.find_library("c"))) == []


def test_the_message_gives_the_apt_command_for_known_libraries_and_names_the_others() -> None:
    text = gui_libraries.message(["libxcb-cursor.so.0", "libxkbcommon-x11.so.0", "libodd.so.3"])
    assert "sudo apt install libxcb-cursor0 libxkbcommon-x11-0" in text
    assert "libodd.so.3" in text.rpartition("On other systems")[2]
    assert "libodd.so.3" in gui_libraries.message(["libodd.so.3"]) and "apt" not in gui_libraries.message(["libodd.so.3"])


def test_the_check_runs_only_when_qt_would_load_the_xcb_plugin(tmp_path: Path) -> None:
    qt_root = tmp_path / "Qt"
    (qt_root / "plugins" / "platforms").mkdir(parents=True)
    will_use_xcb = gui_libraries.qt_will_use_xcb
    assert will_use_xcb({"DISPLAY": ":0"}, qt_root)
    assert not will_use_xcb({}, qt_root)  # no display at all: Qt says so itself
    assert not will_use_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, qt_root)
    assert will_use_xcb({"QT_QPA_PLATFORM": "xcb"}, qt_root)
    assert will_use_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, qt_root)  # no wayland plugin: xcb
    (qt_root / "plugins" / "platforms" / "libqwayland.so").touch()
    assert not will_use_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, qt_root)
