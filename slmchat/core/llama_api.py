"""llama.cpp's C API as llama-cpp-python's ctypes bindings, without its high-level `Llama`.

`import llama_cpp` runs the package's `__init__`, which also imports `llama_cpp.llama`: the
high-level class with numpy, its chat formats and more, 27 MB of RSS (46 MB for the whole package
against 19 MB for the bindings alone, measured) in a model process that only drives the C API.
So when nothing has imported the package yet, its module is created without running `__init__`
and only the bindings module is loaded into it; a process that already imported the whole
package (the tests, a script) keeps it. The app reaches llama-cpp-python only through
`llama_cpp` from here.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from types import ModuleType


def _bindings_only() -> ModuleType:
    loaded = sys.modules.get("llama_cpp")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ImportError("llama-cpp-python is not installed.")
    package = importlib.util.module_from_spec(spec)  # the package, its __init__ not run
    sys.modules["llama_cpp"] = package
    try:
        bindings = importlib.import_module("llama_cpp.llama_cpp")
    except BaseException:
        del sys.modules["llama_cpp"]
        raise
    package.__dict__.update({name: value for name, value in vars(bindings).items() if not name.startswith("__")})
    package.__version__ = importlib.metadata.version("llama_cpp_python")
    return package


llama_cpp = _bindings_only()
