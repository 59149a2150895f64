"""Light and dark themes: colours from assets/themes/*.qss, applied to the style sheet and palette."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import lru_cache

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

from slmchat.paths import assets_dir

_VARIABLE = re.compile(r"^@([a-z_]+):\s*([^;]+);", re.MULTILINE)


class ThemeChoice(str, enum.Enum):
    LIGHT = "light"
    DARK = "dark"
    SYSTEM = "system"


@dataclass(frozen=True)
class Theme:
    """One theme's colours by name (`window`, `text`, `accent`, `bubble`, `code_bg`, …)."""

    name: str
    colors: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return self.colors[key]

    def qcolor(self, key: str) -> QColor:
        return QColor(self.colors[key])

    @property
    def is_dark(self) -> bool:
        return self.name == "dark"

    @property
    def pygments_style(self) -> str:
        return self.colors["pygments"]

    def style_sheet(self) -> str:
        """style.qss with this theme's @names replaced (longest first: @accent_hover before @accent)."""
        rules = (assets_dir() / "themes" / "style.qss").read_text(encoding="utf-8")
        for key in sorted(self.colors, key=len, reverse=True):
            rules = rules.replace(f"@{key}", self.colors[key])
        return rules


@lru_cache(maxsize=None)
def load_theme(name: str) -> Theme:
    """Read `assets/themes/<name>.qss` (only its `@name: value;` lines)."""
    text = (assets_dir() / "themes" / f"{name}.qss").read_text(encoding="utf-8")
    return Theme(name=name, colors={key: value.strip() for key, value in _VARIABLE.findall(text)})


def resolve(choice: ThemeChoice | str) -> Theme:
    """The concrete theme for a choice; "system" asks Qt for the desktop's colour scheme."""
    choice = ThemeChoice(choice)
    if choice is ThemeChoice.SYSTEM:
        scheme = QGuiApplication.styleHints().colorScheme()
        return load_theme("dark" if scheme == Qt.ColorScheme.Dark else "light")
    return load_theme(choice.value)


def apply(app: QApplication, theme: Theme, font_point_size: float | None = None) -> None:
    """Fusion + a palette and style sheet built from the theme, so every widget agrees."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: "window",
        QPalette.ColorRole.WindowText: "text",
        QPalette.ColorRole.Base: "base",
        QPalette.ColorRole.AlternateBase: "sidebar",
        QPalette.ColorRole.Text: "text",
        QPalette.ColorRole.Button: "base",
        QPalette.ColorRole.ButtonText: "text",
        QPalette.ColorRole.Highlight: "accent",
        QPalette.ColorRole.HighlightedText: "accent_text",
        QPalette.ColorRole.ToolTipBase: "base",
        QPalette.ColorRole.ToolTipText: "text",
        QPalette.ColorRole.PlaceholderText: "muted",
        QPalette.ColorRole.Link: "accent",
        QPalette.ColorRole.Mid: "border",
    }
    for role, key in roles.items():
        palette.setColor(role, theme.qcolor(key))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, theme.qcolor("muted"))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, theme.qcolor("muted"))
    app.setPalette(palette)
    if font_point_size:
        font = QFont(app.font())
        font.setPointSizeF(font_point_size)
        app.setFont(font)
    app.setStyleSheet(theme.style_sheet())
