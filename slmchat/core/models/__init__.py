"""Which models there are and which of them this computer can run.

`catalog.py` is the curated list (assets/catalog.json), each download pinned to a revision, size
and sha256, and checks that a file holds the model its name claims; `catalog_refresh.py` is the
maintainer's check of those pins against the hub; `hardware.py` looks at this machine and says
whether a model will fit and run fast enough; `hub.py` searches and downloads through the real
huggingface_hub client (resumable, verified, no telemetry); `first_downloads.py` remembers what
an unpinned catalog file's first download got, so later ones must match; `library.py` is the
models on disk. Nothing here loads a model: `hardware.py` asks llama.cpp what it was built with
only when told to probe.

May import: errors, llama_api, gguf, slmchat.paths.
"""
