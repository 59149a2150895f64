"""A disk that fills up, for real: the process may not grow any file past a size (RLIMIT_FSIZE).

Writes past the limit fail inside SQLite exactly as on a full disk (the write system call comes
back short); SIGXFSZ, which would otherwise end the process, is ignored meanwhile.
"""

from __future__ import annotations

import contextlib
import resource
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def files_may_not_grow_past(size: int) -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
