#!/usr/bin/env bash
# Put slmchat in this user's applications menu, pointing at this folder (run it once after
# unpacking; double-clicking the `slmchat` program here works without it). Also teaches the
# desktop that *.gguf files are language models, and, when this slmchat can import a model given
# on its command line, makes opening a .gguf file import it into slmchat.
# Undo with ./uninstall.sh. Follows the XDG base-directory specification (XDG_DATA_HOME,
# XDG_CONFIG_HOME); nothing outside this user's home is touched.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
program="$here/slmchat"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
apps="$data_home/applications"
icons="$data_home/icons/hicolor/256x256/apps"
mime_packages="$data_home/mime/packages"
mime_type=application/x-gguf

if [ ! -x "$program" ]; then
  echo "install.sh belongs in the unpacked slmchat folder, next to the slmchat program." >&2
  exit 1
fi
mkdir -p "$apps" "$icons" "$mime_packages" "$config_home"
install -m 0644 "$here/slmchat.png" "$icons/slmchat.png"
install -m 0644 "$here/gguf-mime.xml" "$mime_packages/slmchat-gguf.xml"

# Only a program that takes a model file may be offered for opening one: otherwise a
# double-clicked .gguf would start slmchat with an argument it refuses, and nothing would show.
exec_line="Exec=\"$program\""
takes_a_file=0
if "$program" --help 2>/dev/null | grep -q "MODEL.gguf"; then
  takes_a_file=1
  exec_line="Exec=\"$program\" %f"
fi
sed -e "s|^Exec=.*|$exec_line|" "$here/slmchat.desktop" > "$apps/slmchat.desktop"
if [ "$takes_a_file" = 1 ]; then
  echo "MimeType=$mime_type;" >> "$apps/slmchat.desktop"
  # The default application for .gguf files, in the user's mimeapps.list.
  list="$config_home/mimeapps.list"
  touch "$list"
  awk -v entry="$mime_type=slmchat.desktop" -v key="$mime_type=" '
    /^\[/ { if (in_defaults && !done) { print entry; done = 1 } in_defaults = ($0 == "[Default Applications]") }
    in_defaults && index($0, key) == 1 { if (!done) { print entry; done = 1 } next }
    { print }
    END { if (!done) { if (!in_defaults) print "[Default Applications]"; print entry } }
  ' "$list" > "$list.tmp" && mv "$list.tmp" "$list"
fi
chmod +x "$apps/slmchat.desktop"

# Refresh the desktop's caches where the tools exist (a new login does it too).
command -v update-mime-database >/dev/null && update-mime-database "$data_home/mime" >/dev/null 2>&1 || true
command -v update-desktop-database >/dev/null && update-desktop-database "$apps" >/dev/null 2>&1 || true
command -v gtk-update-icon-cache >/dev/null && gtk-update-icon-cache -q -t "$data_home/icons/hicolor" >/dev/null 2>&1 || true

echo "slmchat is now in your applications menu."
if [ "$takes_a_file" = 1 ]; then
  echo "Opening a .gguf file now imports it into slmchat."
fi
