#!/usr/bin/env bash
# Build llama.cpp's own llama-bench from the exact source that the installed llama-cpp-python
# vendors (its sdist), so the benchmarks compare the app with raw llama.cpp of the same
# version and build flags. Cached outside the repo; prints the binary's path.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python="$root/.venv/bin/python"
version=$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')
cache=${SLMCHAT_BENCH_CACHE:-$HOME/.cache/slmchat-bench}/llama.cpp-$version
bin="$cache/build/bin/llama-bench"
if [ ! -x "$bin" ]; then
  mkdir -p "$cache"
  "$python" -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$cache" >&2
  tar -xzf "$cache"/llama_cpp_python-"$version".tar.gz -C "$cache"
  src="$cache/llama_cpp_python-$version/vendor/llama.cpp"
  # The same CPU flags llama-cpp-python uses by default on Linux (GGML_NATIVE).
  cmake -S "$src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >&2
  cmake --build "$cache/build" --target llama-bench -j "$(nproc)" >&2
fi
echo "$bin"
