"""Downloads that outlive the window showing them: core's `Hub.download` on the thread pool.

Progress comes from the download thread and is re-sent as a queued signal, so widgets only ever
change on the GUI thread. Pause keeps the bytes (starting the download again continues from
them, even after a restart); cancel deletes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal

from slmchat.core.errors import DownloadCancelled, DownloadPaused
from slmchat.core.models.hub import DownloadControl, DownloadProgress, Hub
from slmchat.core.models.library import LibraryModel, ModelLibrary
from slmchat.gui.notices import user_message
from slmchat.gui.workers import run_task
from slmchat.paths import Paths


@dataclass(frozen=True)
class DownloadKey:
    repo_id: str
    filename: str


class Downloads(QObject):
    """Starts, pauses and cancels downloads; reports through signals keyed by `DownloadKey`."""

    progress = Signal(object, object)  # DownloadKey, DownloadProgress
    finished = Signal(object, object)  # DownloadKey, LibraryModel
    stopped = Signal(object, str, bool)  # DownloadKey, message for the user, paused (bytes kept)

    def __init__(self, library: ModelLibrary, paths: Paths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.paths = paths
        self._controls: dict[DownloadKey, DownloadControl] = {}
        self._last: dict[DownloadKey, DownloadProgress] = {}
        self.progress.connect(self._remember)

    def running(self, key: DownloadKey) -> bool:
        return key in self._controls

    def last_progress(self, key: DownloadKey) -> DownloadProgress | None:
        return self._last.get(key)

    def start(self, key: DownloadKey, expected_sha256: str | None = None, token: str = "") -> None:
        """Download (or continue downloading) one file into the library."""
        if key in self._controls:
            return
        control = DownloadControl()
        self._controls[key] = control
        hub = Hub(self.library, token=token or None)

        def report(progress: DownloadProgress) -> None:  # on the download thread
            self.progress.emit(key, progress)

        def work() -> LibraryModel:
            return hub.download(key.repo_id, key.filename, expected_sha256=expected_sha256,
                                on_progress=report, control=control)

        def done(model: LibraryModel) -> None:
            self._controls.pop(key, None)
            self._last.pop(key, None)
            self.finished.emit(key, model)

        def failed(error: Exception) -> None:
            self._controls.pop(key, None)
            paused = isinstance(error, DownloadPaused)
            if not paused:
                self._last.pop(key, None)
            text = "" if isinstance(error, DownloadCancelled) else user_message(error, self.paths.log_file)
            self.stopped.emit(key, text, paused)

        run_task(work, done, failed)

    def pause(self, key: DownloadKey) -> None:
        control = self._controls.get(key)
        if control is not None:
            control.pause()

    def cancel(self, key: DownloadKey) -> None:
        control = self._controls.get(key)
        if control is not None:
            control.cancel()

    def cancel_all(self) -> None:
        """At exit: stop every download but keep its bytes, so it resumes next time."""
        for control in self._controls.values():
            control.pause()

    def _remember(self, key: DownloadKey, progress: DownloadProgress) -> None:
        self._last[key] = progress


def describe_progress(progress: DownloadProgress) -> str:
    """'312 MB of 1.1 GB · 4.2 MB/s · 3 min left'."""
    parts = [f"{format_size(progress.done)} of {format_size(progress.total)}"]
    if progress.speed > 0:
        parts.append(f"{format_size(int(progress.speed))}/s")
    if progress.eta is not None and progress.eta >= 1:
        minutes = progress.eta / 60
        parts.append(f"{progress.eta:.0f} s left" if minutes < 1 else f"{minutes:.0f} min left")
    return " · ".join(parts)


def format_size(n_bytes: int) -> str:
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:.1f} GB"
    if n_bytes >= 1e6:
        return f"{n_bytes / 1e6:.0f} MB"
    return f"{n_bytes / 1e3:.0f} kB"
