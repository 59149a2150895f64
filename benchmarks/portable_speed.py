"""Decode speed of the portable bundle's llama.cpp ÷ the native build's, on this machine.

The release bundle carries a llama.cpp built for every x86-64 CPU (one libggml-cpu-<variant>.so
per instruction-set level, the best chosen at run time); the developer's .venv has one built with
-march=native for exactly this CPU. This asks what the portability costs a user: two worker
processes, each holding the app's real Engine (slmchat.core.engine) with the same model, threads
and settings loaded and warmed, one on .venv's llama.cpp, one on the portable build's; replies
alternate (native, portable, portable, native, ...) so both meet the same machine load and
neither always goes first; the figure is the ratio of the medians of llama.cpp's own decode
tokens/s (goal >= 0.97).

The portable worker runs in build/portable-venv, the very llama.cpp the bundle was frozen from:
the script first checks that every llama.cpp library in the bundle is byte-identical to it.

    bash packaging/build_linux.sh --portable        # once
    .venv/bin/python benchmarks/portable_speed.py [--pairs 16] [--tokens 200] [--threads T]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
from importlib.metadata import files
from pathlib import Path
from types import ModuleType

from common import ROOT, add_common_arguments, add_threads_argument, describe_threads, load_average, \
    machine, median, print_machine, save_results, threads_flag

PORTABLE_PYTHON = ROOT / "build" / "portable-venv" / "bin" / "python"
BUNDLE = ROOT / "build" / "dist-portable" / "slmchat"
PROMPT = " ".join(str(i) for i in range(30))  # the model keeps counting: long, steady replies


def ggml_backends() -> ModuleType:
    """packaging/ggml_backends.py, by path (a folder named `packaging` would shadow the PyPI one)."""
    spec = importlib.util.spec_from_file_location("ggml_backends", ROOT / "packaging" / "ggml_backends.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def llama_libraries() -> dict[str, Path]:
    """The llama.cpp shared libraries this interpreter's llama_cpp loads (its lib/ folder), and
    a portable build's CPU variants (which the wheel puts elsewhere), by file name."""
    return {entry.name: Path(str(entry.locate())) for entry in files("llama_cpp_python") or []
            if (entry.name.startswith("libggml-cpu-") and entry.name.endswith(".so"))
            or (entry.as_posix().startswith("llama_cpp/lib/") and ".so" in entry.name)}


def worker(args: argparse.Namespace) -> None:
    """Load the model once, warm it, then decode one reply per line read; one JSON line each."""
    from slmchat.core.engine.engine import Engine
    from slmchat.core.generation import EngineConfig, GenerationSettings

    libraries = llama_libraries()
    variants = [path for name, path in libraries.items() if name.startswith("libggml-cpu-")]
    variant = None
    if variants:  # the portable build: register its CPU variants (the wheel puts them in bin/)
        variant = ggml_backends().load_backends(libraries["libllama.so"].parent, variants[0].parent)
        if variant is None:
            raise SystemExit("portable llama.cpp: no CPU variant loaded")
    engine = Engine(EngineConfig(args.model, n_ctx=1024, n_threads=args.threads))
    settings = GenerationSettings(max_tokens=args.tokens, temperature=0)
    engine.complete(PROMPT, settings).read()  # the first decode repacks weights
    print(json.dumps({"variant": variant or "native"}), flush=True)
    for _line in sys.stdin:
        generation = engine.complete(PROMPT, settings)
        generation.read()
        print(json.dumps({"tokens_per_s": generation.stats.decode_tokens_per_s,
                          "tokens": generation.stats.completion_tokens}), flush=True)
    engine.close()


def check_bundle_matches(portable_python: Path, bundle: Path) -> int:
    """Every llama.cpp library in the bundle is byte-identical to the portable venv's; how many."""
    listing = subprocess.run([str(portable_python), "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
                              "from portable_speed import llama_libraries; "
                              "print(json.dumps({k: str(v) for k, v in llama_libraries().items()}))",
                              str(Path(__file__).parent)], capture_output=True, text=True, check=True)
    venv = json.loads(listing.stdout)
    inside = {path.name: path for path in (bundle / "_internal" / "llama_cpp" / "lib").glob("lib*.so*")}
    digest = lambda path: hashlib.sha256(Path(path).read_bytes()).hexdigest()  # noqa: E731
    differing = [name for name, path in inside.items() if name not in venv or digest(path) != digest(venv[name])]
    if differing or not inside:
        raise SystemExit(f"the bundle's llama.cpp is not build/portable-venv's: {differing or 'no libraries'}")
    return len(inside)


class Worker:
    def __init__(self, python: Path, args: argparse.Namespace) -> None:
        command = [str(python), str(Path(__file__).resolve()), "--worker", "--model", str(args.model),
                   "--tokens", str(args.tokens), *threads_flag(args.threads)]
        self.log = tempfile.TemporaryFile("w+")  # llama.cpp's chatter; shown if the worker fails
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        text=True)
        self.variant = self._answer()["variant"]

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.log.seek(0)
            raise SystemExit(f"worker {self.process.args[0]} ended early:\n{self.log.read()[-3000:]}")
        return json.loads(line)

    def reply(self) -> dict:
        self.process.stdin.write("go\n")
        self.process.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the starter model)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per reply")
    parser.add_argument("--pairs", type=int, default=16, help="native/portable reply pairs")
    parser.add_argument("--portable-python", type=Path, default=PORTABLE_PYTHON)
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    add_threads_argument(parser)
    add_common_arguments(parser, "portable_speed")
    args = parser.parse_args()
    if args.model is None:
        from slmchat.paths import starter_model

        args.model = starter_model()
    if args.worker:
        worker(args)
        return
    facts = machine()
    print_machine(facts)
    checked = check_bundle_matches(args.portable_python, args.bundle)
    print(f"bundle {args.bundle}: its {checked} llama.cpp libraries are byte-identical to {args.portable_python}'s")
    native, portable = Worker(Path(sys.executable), args), Worker(args.portable_python, args)
    print(f"model {args.model.name}, {describe_threads(args.threads)}, {args.tokens} tokens a reply; "
          f"portable build chose the CPU variant '{portable.variant}'")
    speeds: dict[str, list[float]] = {"native": [], "portable": []}
    try:
        for pair in range(args.pairs):
            order = (("native", native), ("portable", portable))
            for name, side in order if pair % 2 == 0 else order[::-1]:  # A B, B A: neither always goes first
                answer = side.reply()
                speeds[name].append(answer["tokens_per_s"])
                print(f"  pair {pair + 1} {name:8s} {answer['tokens_per_s']:7.1f} tok/s ({answer['tokens']} tokens)")
    finally:
        native.close()
        portable.close()
    ratio = median(speeds["portable"]) / median(speeds["native"])
    print(f"decode speed, portable ÷ native: {ratio:.3f} (medians {median(speeds['portable']):.1f} vs "
          f"{median(speeds['native']):.1f} tok/s over {args.pairs} alternating pairs; goal >= 0.97); "
          f"load average at the end {' '.join(f'{x:.2f}' for x in load_average())}")
    save_results(args.results, args.key, {"ratio": ratio, "speeds": speeds, "variant": portable.variant,
                                          "threads": args.threads, "tokens": args.tokens, "machine": facts})


if __name__ == "__main__":
    main()
