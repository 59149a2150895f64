"""One loaded chat model on llama.cpp's C API.

`engine.py` formats the chat (`templates.py`), streams, stops within a token, reuses the KV cache
between turns and restores saved states (`kv_state.py`); `backend.py` decides how llama.cpp runs
here (threads, GPU layers, cache types) as pure functions of detected facts; `native.py` is the
thin low-level wrapper the task runners share. This code loads llama.cpp, so it runs in the
model process (process/) or in a test, never in the window's process.

May import: errors, generation, plaintext, llama_api, gguf, models, slmchat.paths.
Must not import: store, tasks, process.
"""
