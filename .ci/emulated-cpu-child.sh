#!/bin/sh
# Starts a bundle's model process on the same emulated CPU as the app under test (.ci/run sets
# the variables; packaging/launch.py uses this program when SLMCHAT_MODEL_PROCESS_WRAPPER names
# it). qemu-user emulates only the program it was given: a process that program starts would
# run on the real CPU again.
exec qemu-x86_64 -cpu "$SLMCHAT_EMULATED_CPU" "$SLMCHAT_BUNDLE_PROGRAM" "$@"
