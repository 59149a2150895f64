"""The document library: the user's own files, indexed so a chat model can answer from them with sources.

`extract.py` reads text with its places out of plain text, Markdown, PDF, Word, HTML and source
code (bad input gets a status and a reason); `chunk.py` cuts it along the document's structure;
`index.py` is the library's own SQLite file (collections, files, chunks, FTS5, vectors);
`indexer.py` brings the index up to date incrementally in a background process that can be
paused, resumed and killed; `retrieve.py` finds the passages for a question (BM25 and MiniLM
fused by rank, or the whole text when it fits); `answer.py` builds the prompt with numbered
sources and returns the sources to store with the reply. `service.py` runs all of it in a process of
its own for the window, whose process never loads numpy or llama.cpp.

May import: errors, generation, plaintext, tasks, process, slmchat.paths.
"""
