"""Logging to a rotating file under the log folder; the console stays quiet."""

from __future__ import annotations

import logging
import logging.handlers

from slmchat.paths import Paths

_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def setup_logging(paths: Paths, level: int = logging.INFO) -> None:
    """Send the `slmchat` logger to `paths.log_file` (idempotent: one handler per file)."""
    paths.logs.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger("slmchat")
    logger.setLevel(level)
    target = str(paths.log_file)
    for handler in logger.handlers:
        if getattr(handler, "baseFilename", None) == target:
            return
    handler = logging.handlers.RotatingFileHandler(
        target, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(handler)
    logger.propagate = False
