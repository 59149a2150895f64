"""`python -m slmchat` starts the desktop app."""

from slmchat.app import main

if __name__ == "__main__":
    raise SystemExit(main())
