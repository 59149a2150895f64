"""The app's core: everything slmchat knows and does, with no Qt, so the CLI and tests drive it headless.

The packages, each built only on those above it (its `__init__` says what it may import):

    gguf/      a GGUF model file: the one bounded reader and validator
    models/    which models exist: the catalog, this machine and "will it fit", hub downloads, the library
    engine/    one loaded chat model on llama.cpp's C API (runs in the model process, never the window's)
    store/     the conversation database: schema, writer, readers, recording a turn, export
    tasks/     the non-chat models: T5, embeddings, classifiers, semantic search
    process/   a model in its own process, and the clients the app talks to it through

The modules directly in core/ are the shared vocabulary that every package may use, and they
import none of the packages: `errors` (every error a user can meet), `generation` (the records
that cross between engine, process, store and GUI), `plaintext` (untrusted text made safe to
show) and `llama_api` (llama.cpp's bindings, loaded without numpy).

Nothing under core/ imports Qt, the GUI, the CLI or the app's settings; `slmchat.paths` is the
one module outside core/ it may use. tests/test_import_rules.py keeps these rules.
"""
