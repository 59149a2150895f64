"""Other programs on this computer use the models through an OpenAI-compatible HTTP API.

`api_error.py` is the one error shape OpenAI's clients understand; `body.py` reads a request's
JSON, refusing an oversized body by its size before reading it whole; `validate.py` turns the
JSON into slmchat's own records (ChatMessage, GenerationSettings) or a precise 400; `lane.py`
runs one model's requests one at a time on a thread of its own, a bounded queue in front
(past it: 429), and stops a request whose client went away; `served.py` loads the models in
their processes (process/) and says what each can do; `replies.py` writes OpenAI's JSON and
server-sent events; `stops.py` ends a reply at a stop sequence; `app.py` is the Starlette
application that ties them together; `running.py` binds the socket and runs the server, in
the foreground or on a thread. The window serves its own loaded model (`hosted.py`), sharing
its engine with its own chat (`turns.py`), and keeps other apps' chats only when the user asked
(`record.py`); `slmchat-cli serve` never stores them.

May import: errors, generation, plaintext, gguf, models, tasks, process, store, slmchat.paths.
"""
