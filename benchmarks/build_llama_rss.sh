#!/usr/bin/env bash
# Build llama-rss (benchmarks/llama_rss.c: llama.cpp's C API without Python, the memory reference
# of memory.py) against the llama.cpp that build_llama_bench.sh builds from the exact source the
# installed llama-cpp-python vendors. Cached beside it, rebuilt when llama_rss.c changes; prints
# the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bench=$("$here/build_llama_bench.sh")         # .../build/bin/llama-bench: the libraries are beside it
bin_dir=$(dirname "$bench")
build=$(dirname "$bin_dir")
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")
digest=$(sha256sum "$here/llama_rss.c" | cut -c1-12)
bin="$bin_dir/llama-rss-$digest"
if [ ! -x "$bin" ]; then
  # llama-bench's target builds libllama and ggml's libraries; llama-rss links them as shared
  # libraries, as llama-cpp-python does.
  cc -O2 -std=c11 -Wall -Wextra -o "$bin.tmp" "$here/llama_rss.c" -I "$src/include" -I "$src/ggml/include" \
    -L "$bin_dir" -lllama -lggml -lggml-base -Wl,-rpath,"$bin_dir" >&2
  mv "$bin.tmp" "$bin"
fi
echo "$bin"
