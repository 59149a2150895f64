"""What a new, empty chat shows: a greeting and a few ideas to start from."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

SUGGESTIONS = (
    ("Explain something simply", "Explain how a rainbow forms, in simple words."),
    ("Write a short poem", "Write a short poem about the sea at night."),
    ("Plan my day", "Help me plan a relaxed Sunday with a walk and some reading."),
    ("Give me ideas", "Give me five ideas for a quick vegetarian dinner."),
)


class EmptyState(QWidget):
    suggestion_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        title = QLabel("What would you like to talk about?")
        title.setProperty("role", "title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(title)
        self.subtitle = QLabel("Everything stays on this computer.")
        self.subtitle.setProperty("role", "muted")
        self.subtitle.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.subtitle)
        layout.addSpacing(18)
        grid = QGridLayout()
        grid.setSpacing(10)
        for number, (label, prompt) in enumerate(SUGGESTIONS):
            button = QPushButton(label)
            button.setToolTip(prompt)
            button.setMinimumHeight(44)
            button.clicked.connect(lambda _checked=False, p=prompt: self.suggestion_chosen.emit(p))
            grid.addWidget(button, number // 2, number % 2)
        holder = QWidget()
        holder.setLayout(grid)
        holder.setMaximumWidth(520)
        layout.addWidget(holder, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)
