"""Before Qt starts: can its xcb platform plugin load on this computer? If not, which system
packages are missing, said in a message a person can act on.

Without this, a bundle started on a system that lacks, say, libxcb-cursor0 dies inside Qt with
"could not load the Qt platform plugin xcb" on a terminal nobody sees: a double-click that does
nothing. The bundle carries the xcb helper libraries it can; the ones it cannot carry (the
graphics stack, libX11, libxcb itself) must come from the system, and every desktop has them.

Standard library only: the launcher imports this before anything else.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

# What each library Qt's xcb plugin needs is called as a Debian / Ubuntu package.
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0", "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0", "libGLX.so.0": "libglx0", "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6", "libdbus-1.so.3": "libdbus-1-3", "libX11.so.6": "libx11-6",
    "libX11-xcb.so.1": "libx11-xcb1", "libxcb.so.1": "libxcb1", "libstdc++.so.6": "libstdc++6",
    "libgcc_s.so.1": "libgcc-s1", "libexpat.so.1": "libexpat1",
}


def xcb_plugin(qt_root: Path) -> Path:
    """Qt's xcb platform plugin inside PySide6's Qt folder."""
    return qt_root / "plugins" / "platforms" / "libqxcb.so"


def qt_will_use_xcb(environ: os._Environ[str] | dict[str, str], qt_root: Path) -> bool:
    """Whether starting Qt here would load the xcb plugin: an X display (or XWayland) and no
    other platform chosen; on a Wayland session Qt prefers its wayland plugin when it has one."""
    platform = environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0].split(";")[0] == "xcb"
    if environ.get("WAYLAND_DISPLAY") and any((qt_root / "plugins" / "platforms").glob("libqwayland*.so")):
        return False
    return bool(environ.get("DISPLAY"))


def missing_libraries(library: Path) -> list[str]:
    """The shared libraries `library` needs (directly or through others) that this system cannot
    find; empty when it loads. Loading it is the real test; `ldd` then names everything missing
    (the loader's own error names only the first)."""
    try:
        ctypes.CDLL(str(library))
        return []
    except OSError as error:
        first = str(error).partition(":")[0].strip()
    ldd = shutil.which("ldd")
    if ldd is None:
        return [first]
    listing = subprocess.run([ldd, str(library)], capture_output=True, text=True, check=False).stdout
    missing = [line.split("=>")[0].strip() for line in listing.splitlines() if "not found" in line]
    return missing or [first]


def message(missing: list[str]) -> str:
    """What to tell the person who double-clicked: what is missing and the command that fixes it."""
    packages = sorted({DEBIAN_PACKAGES[name] for name in missing if name in DEBIAN_PACKAGES})
    unknown = sorted(name for name in missing if name not in DEBIAN_PACKAGES)
    lines = ["slmchat cannot open its window: this computer lacks system libraries its window needs "
             f"({', '.join(missing)})."]
    if packages:
        lines.append(f"On Debian, Ubuntu or Linux Mint, install them with:\n  sudo apt install {' '.join(packages)}")
        lines.append(f"On other systems, install the packages that provide {', '.join(unknown or missing)}, "
                     "then start slmchat again.")
    else:
        lines.append(f"Install the packages that provide {', '.join(missing)} (or unpack slmchat again, "
                     "if it came with them), then start slmchat again.")
    return "\n\n".join(lines)


def tell(text: str) -> None:
    """Say it on stderr, and in a dialog box when the desktop has a tool for one (Qt is the
    thing that cannot start, so it cannot be the one to show it)."""
    print(text, file=sys.stderr)
    for command in (["zenity", "--error", "--no-wrap", "--title=slmchat", f"--text={text}"],
                    ["kdialog", "--title", "slmchat", "--error", text],
                    ["xmessage", "-center", text]):
        if shutil.which(command[0]):
            subprocess.run(command, check=False)
            return
