"""Frozen-app entry point. In order, before anything imports Qt or llama.cpp:

1. In a model process (multiprocessing re-runs this program with --multiprocessing-fork),
   register a portable llama.cpp's CPU variants from the bundle (packaging/ggml_backends.py),
   then let freeze_support() run the child.
2. With --self-test, say which CPU variant llama.cpp chose here, and have the model process say
   it too. CI runs the self-test under an emulated old CPU (qemu-user), which does not follow
   the program into the processes it starts: SLMCHAT_MODEL_PROCESS_WRAPPER names a program to
   start them through (.ci/emulated-cpu-child.sh), so they run on the emulated CPU as well.
3. Before the window: check that Qt's xcb platform plugin can load, or say which system
   packages are missing (packaging/gui_libraries.py) instead of failing silently.
"""

import multiprocessing
import os
import sys
from pathlib import Path

import ggml_backends
import gui_libraries

REPORT_VARIANT_ENV = "SLMCHAT_REPORT_CPU_VARIANT"
WRAPPER_ENV = "SLMCHAT_MODEL_PROCESS_WRAPPER"


def bundle_root() -> Path:
    """The folder PyInstaller unpacked the app's files to (`_internal/` next to the program)."""
    return Path(getattr(sys, "_MEIPASS", Path(__file__).resolve().parent))


def describe(variant: str | None) -> str:
    return f"llama.cpp CPU variant: {variant or 'none (a native build)'}"


def main() -> int:
    argv = sys.argv[1:]
    lib_dir = bundle_root() / "llama_cpp" / "lib"
    if "--multiprocessing-fork" in argv:
        variant = ggml_backends.load_backends(lib_dir)
        if os.environ.get(REPORT_VARIANT_ENV):
            print(f"model process: {describe(variant)}", file=sys.stderr, flush=True)
    multiprocessing.freeze_support()  # a model process runs here and exits; the app goes on
    if "--self-test" in argv:
        print(describe(ggml_backends.load_backends(lib_dir)), flush=True)
        os.environ[REPORT_VARIANT_ENV] = "1"
        if os.environ.get(WRAPPER_ENV):
            multiprocessing.set_executable(os.environ[WRAPPER_ENV])
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
