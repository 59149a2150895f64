#!/usr/bin/env bash
# Build the Linux one-folder bundle and its tarball, then prove the built binary works by
# running its --self-test with the bundled starter model. Prints the bundle's size and the
# self-test's wall time.
#
#   bash packaging/build_linux.sh            -> build/slmchat-<version>-linux-<arch>.tar.gz
#
# The bundle is built with the llama.cpp that .venv has. For a bundle to hand to other people,
# build llama-cpp-python without -march=native first (see packaging/README.md), or it may stop
# with "illegal instruction" on an older CPU.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash packaging/dev.sh setup
py=.venv/bin/python
"$py" -m pip install --quiet "pyinstaller>=6.6"
version=$("$py" -c 'import slmchat; print(slmchat.__version__)')
arch=$(uname -m)

"$py" -m PyInstaller --noconfirm --log-level WARN \
  --distpath build/dist --workpath build/work packaging/slmchat.spec
bundle=build/dist/slmchat
install -m 0644 packaging/linux/slmchat.desktop "$bundle/slmchat.desktop"
install -m 0755 packaging/linux/install-desktop-entry.sh "$bundle/install-desktop-entry.sh"
install -m 0644 assets/icons/slmchat-256.png "$bundle/slmchat.png"

tarball="build/slmchat-$version-linux-$arch.tar.gz"
tar -C build/dist -czf "$tarball" slmchat

model="$bundle/_internal/assets/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TIMEFORMAT="self-test (start, load the starter model, generate, exit): %R s"
time QT_QPA_PLATFORM=offscreen "$bundle/slmchat" --self-test "$model"
echo "bundle: $(du -sh "$bundle" | cut -f1) on disk, tarball $(du -h "$tarball" | cut -f1) ($tarball)"
