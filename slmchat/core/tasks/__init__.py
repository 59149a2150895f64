"""The non-chat models: translate and summarize (T5), embeddings, sentiment, semantic search.

`capabilities.py` decides from a file's header what a model can do, without llama.cpp, so the
window can ask; `t5.py` and `embeddings.py` run inside the model process; `semantic.py` keeps
message vectors in the store and ranks them; `bert_convert.py` turns BERT-family checkpoints into
GGUF where the hub has none.

May import: errors, generation, llama_api, gguf, engine, store.
Must not import: process (the clients in process/ build these runners, not the other way round).
"""
