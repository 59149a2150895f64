#!/bin/sh
# Starts a bundle's model process on the same emulated CPU as the app under test (.ci/run sets
# the variables; packaging/launch.py uses this program when SLMCHAT_MODEL_PROCESS_WRAPPER names
# it). qemu-user emulates only the program it was given: a process that program starts would
# run on the real CPU again. The bundle's LD_LIBRARY_PATH is handed to the emulated program
# only, not to qemu itself.
exec env -u LD_LIBRARY_PATH qemu-x86_64 -cpu "$SLMCHAT_EMULATED_CPU" -E "LD_LIBRARY_PATH=$LD_LIBRARY_PATH" \
  "$SLMCHAT_BUNDLE_PROGRAM" "$@"
