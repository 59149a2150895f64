"""`python -m slmchat.cli`."""

from slmchat.cli import main

raise SystemExit(main())
