"""Which models there are and which of them this computer can run.

`catalog.py` is the curated list (assets/catalog.json); `hardware.py` looks at this machine and
says whether a model will fit and run fast enough; `hub.py` searches and downloads through the
real huggingface_hub client (resumable, verified, no telemetry); `library.py` is the models on
disk. Nothing here loads a model: `hardware.py` asks llama.cpp what it was built with only when
told to probe.

May import: errors, llama_api, gguf, slmchat.paths.
"""
