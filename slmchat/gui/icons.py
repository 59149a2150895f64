"""The app icon: one SVG source, and PNG sizes rendered from it with Qt (`python -m slmchat.gui.icons`)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QIcon, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

from slmchat.paths import assets_dir

PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def icon_dir() -> Path:
    return assets_dir() / "icons"


def app_icon() -> QIcon:
    """The window icon: every PNG size there is, or the SVG when the PNGs were not made."""
    icon = QIcon()
    for size in PNG_SIZES:
        png = icon_dir() / f"slmchat-{size}.png"
        if png.is_file():
            icon.addFile(str(png))
    return icon if not icon.isNull() else QIcon(str(icon_dir() / "slmchat.svg"))


def render_png(svg: Path, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def write_pngs() -> list[Path]:
    """Render `slmchat.svg` to `slmchat-<size>.png` beside it (run after editing the SVG)."""
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication.instance() or QGuiApplication([])  # painting needs one alive
    written = []
    for size in PNG_SIZES:
        target = icon_dir() / f"slmchat-{size}.png"
        render_png(icon_dir() / "slmchat.svg", size).save(str(target))
        written.append(target)
    return written


if __name__ == "__main__":
    for path in write_pngs():
        print(path)
