"""A heartbeat on the GUI thread: a 10 ms timer whose gaps say how long the thread was busy.

GUI tests run it while something heavy happens elsewhere (a reply streaming, other apps' API
calls, a file rewritten) and assert that no gap is long enough to be a freeze a user would see.
"""

from __future__ import annotations

from types import TracebackType

from PySide6.QtCore import QElapsedTimer, QTimer


class Heartbeat:
    """Use as a context manager; `gaps` holds the milliseconds between beats."""

    def __init__(self, interval_ms: int = 10) -> None:
        self.gaps: list[int] = []
        self._clock = QElapsedTimer()
        self._timer = QTimer()
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(lambda: self.gaps.append(self._clock.restart()))

    def __enter__(self) -> "Heartbeat":
        self._clock.start()
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._timer.stop()

    @property
    def worst(self) -> int:
        return max(self.gaps)
