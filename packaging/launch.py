"""Frozen-app entry point. In order, before anything imports Qt or llama.cpp:

1. In a model process (multiprocessing re-runs this executable with --multiprocessing-fork),
   register a portable llama.cpp's CPU variants from the bundle (packaging/ggml_backends.py),
   then let freeze_support() run the child.
2. With --self-test, also say which CPU variant llama.cpp chose for this CPU.
3. Before the window: check that Qt's xcb platform plugin can load, or say which system
   packages are missing (packaging/gui_libraries.py) instead of failing silently.
"""

import multiprocessing
import os
import sys
from pathlib import Path

import ggml_backends
import gui_libraries


def bundle_root() -> Path:
    """The folder PyInstaller unpacked the app's files to (`_internal/` next to the program)."""
    return Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent))


def llama_lib_dir() -> Path:
    return bundle_root() / "llama_cpp" / "lib"


def main() -> int:
    argv = sys.argv[1:]
    if "--multiprocessing-fork" in argv:
        ggml_backends.load_backends(llama_lib_dir())
    multiprocessing.freeze_support()  # a model process runs here and exits; the app goes on
    if "--self-test" in argv:
        variant = ggml_backends.load_backends(llama_lib_dir())
        print(f"llama.cpp CPU variant: {variant or 'native build (no variants)'}", flush=True)
    elif not {"--help", "-h", "--version"} & set(argv):
        qt_root = bundle_root() / "PySide6" / "Qt"
        plugin = gui_libraries.xcb_plugin(qt_root)
        if plugin.is_file() and gui_libraries.qt_will_use_xcb(os.environ, qt_root):
            missing = gui_libraries.missing_libraries(plugin)
            if missing:
                gui_libraries.tell(gui_libraries.message(missing))
                return 1
    from slmchat.app import main as app_main

    return app_main()


if __name__ == "__main__":
    raise SystemExit(main())
