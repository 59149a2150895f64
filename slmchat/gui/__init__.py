"""The Qt layer: presents core objects and relays the user's intent to them.

Widgets and dialogs get what they need passed in and say what the user wants through signals;
`main_window.py` wires them together and nothing here imports it. The window's process never
loads llama.cpp, opens SQLite itself or talks to the network: models run behind
`slmchat.core.process`, the database behind `slmchat.core.store`, downloads behind
`slmchat.core.models.hub`.

Must not import: llama_cpp, slmchat.core.llama_api, sqlite3, sqlite_utils, huggingface_hub, httpx.
"""
