#!/usr/bin/env bash
# Adds slmchat to the desktop's application menu for this user, pointing at this folder.
# (A .desktop file needs an absolute path; run this once after unpacking, or just
# double-click the `slmchat` program in this folder.)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/slmchat.png" "$icons/slmchat.png"
sed "s|^Exec=.*|Exec=\"$here/slmchat\"|" "$here/slmchat.desktop" > "$apps/slmchat.desktop"
chmod +x "$apps/slmchat.desktop"
echo "slmchat is now in your applications menu."
