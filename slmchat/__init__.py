"""slmchat: chat with small language models privately, offline, on your own computer."""

__version__ = "0.1.0"
