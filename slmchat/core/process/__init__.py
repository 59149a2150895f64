"""A model in its own process: a crash, hang or memory blow-up in llama.cpp becomes an error message.

`parent.py` starts and watches the child and never waits on it without a deadline; `child.py`
runs in the child, builds one runner from a picklable spec and serves it over a pipe;
`engine_client.py` and `task_client.py` give the app the chat engine's and the task runners'
interfaces across that boundary. The app (window and CLI) reaches llama.cpp only through here.
`remote_client.py` gives the same chat interface for a model on an OpenAI-compatible server the
user added (over HTTP, no process of ours), so the window cannot tell a remote model from a local one.

May import: errors, generation, plaintext, llama_api, engine, tasks, slmchat.paths.
"""
