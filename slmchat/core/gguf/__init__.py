"""A GGUF model file: the app's one bounded reader and validator, and what it checks against.

`check.py` parses and validates a file in pure Python, fast and capped, so a hostile or truncated
file is refused with a clear message before llama.cpp sees it; `tables.py` holds the facts about
the bundled llama.cpp build it checks against; `template_check.py` vets a file's chat template
without running it. The library, the hub, the engine and the task runners all read files here.
(The PyPI package `gguf`, which the task code uses to write files, is another thing.)

May import: errors, plaintext.
"""
