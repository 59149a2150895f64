"""About slmchat: versions of every part, so a bug report can say exactly what ran."""

from __future__ import annotations

import html
import platform
import sys
from importlib import metadata

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import Qt, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from slmchat import __version__


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions(engine_build: str = "") -> list[tuple[str, str]]:
    """What the About box lists. `engine_build` is llama.cpp's build info from the engine process."""
    return [
        ("slmchat", __version__),
        ("llama-cpp-python", _package_version("llama_cpp_python")),
        ("llama.cpp build", engine_build or "shown once a model has loaded"),
        ("Qt", f"{qVersion()} (PySide6 {pyside_version})"),
        ("Python", f"{platform.python_version()} ({sys.platform}, {platform.machine()})"),
    ]


class AboutDialog(QDialog):
    def __init__(self, parent: QWidget | None = None, engine_build: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("About slmchat")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        layout.setSpacing(10)
        logo = QLabel()
        logo.setPixmap(QGuiApplication.windowIcon().pixmap(64, 64))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(logo)
        title = QLabel("slmchat")
        title.setProperty("role", "title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(title)
        blurb = QLabel("Chat with small language models privately, offline, on your own computer.")
        blurb.setWordWrap(True)
        blurb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        blurb.setProperty("role", "muted")
        layout.addWidget(blurb)
        rows = "".join(
            f"<tr><td style='padding:2px 12px 2px 0'><b>{html.escape(name)}</b></td>"
            f"<td>{html.escape(value)}</td></tr>"
            for name, value in versions(engine_build)
        )
        table = QLabel(f"<table>{rows}</table>")
        table.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(table)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
