#!/usr/bin/env bash
# Undo install.sh: take slmchat out of this user's applications menu and forget the .gguf file
# association. The slmchat folder itself stays (delete it yourself), and so do your
# conversations and models, unless you ask:
#
#   ./uninstall.sh                 menu entry, icon, file association
#   ./uninstall.sh --remove-data   also every conversation, setting, model and log slmchat keeps
set -euo pipefail
remove_data=0
case "${1:-}" in
  --remove-data) remove_data=1 ;;
  "") ;;
  *) echo "usage: ./uninstall.sh [--remove-data]" >&2; exit 2 ;;
esac
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
config_home="${XDG_CONFIG_HOME:-$HOME/.config}"
cache_home="${XDG_CACHE_HOME:-$HOME/.cache}"
state_home="${XDG_STATE_HOME:-$HOME/.local/state}"
mime_type=application/x-gguf

rm -f "$data_home/applications/slmchat.desktop" "$data_home/icons/hicolor/256x256/apps/slmchat.png" \
  "$data_home/mime/packages/slmchat-gguf.xml"
list="$config_home/mimeapps.list"
if [ -f "$list" ]; then
  grep -v "^$mime_type=slmchat.desktop\$" "$list" > "$list.tmp" || true
  mv "$list.tmp" "$list"
fi
command -v update-mime-database >/dev/null && update-mime-database "$data_home/mime" >/dev/null 2>&1 || true
command -v update-desktop-database >/dev/null && update-desktop-database "$data_home/applications" >/dev/null 2>&1 || true
echo "slmchat is no longer in your applications menu."

if [ "$remove_data" = 1 ]; then
  # Where slmchat keeps its files (slmchat/paths.py, platformdirs on Linux). A data folder the
  # user moved elsewhere is named, not deleted: it may be a folder that holds other things.
  moved=$(sed -n 's/.*"data_folder": *"\([^"]*\)".*/\1/p' "$config_home/slmchat/config.json" 2>/dev/null || true)
  for folder in "$data_home/slmchat" "$config_home/slmchat" "$cache_home/slmchat" "$state_home/slmchat"; do
    if [ -e "$folder" ]; then
      rm -rf -- "$folder"
      echo "removed $folder"
    fi
  done
  if [ -n "$moved" ] && [ -e "$moved" ]; then
    echo "Your conversations had been moved to $moved: delete that folder yourself if you no longer need it."
  fi
fi
