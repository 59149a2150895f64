"""Where the user writes: Enter sends, Shift+Enter starts a new line, Esc stops the reply.

The text stays in the box until the window says it is stored (`clear`): a message the database
or the model could not take is never lost. Beside Send, when the model thinks before answering,
this chat's thinking: on, off or as the model likes, and how much of it at most. The Documents
button attaches the user's document collections to the chat (ticked in its menu), so replies
answer from them with sources.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QSpinBox,
    QFrame,
    QToolButton,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

MAX_VISIBLE_LINES = 8
# What a T5 model is offered for: (label, task kind, target language). flan-t5 was trained to
# translate English into these three.
TEXT_TASKS = (
    ("Translate to German", "translate", "German"),
    ("Translate to French", "translate", "French"),
    ("Translate to Romanian", "translate", "Romanian"),
    ("Summarize", "summarize", ""),
)
THINKING_MODES = (  # (label, GenerationSettings.thinking)
    ("Thinking: as the model likes", "auto"),
    ("Thinking: on", "on"),
    ("Thinking: off", "off"),
)
THINKING_BUDGET_MAX = 32768
THINKING_BUDGET_STEP = 256


@dataclass(frozen=True)
class ThinkingChoice:
    """A chat's thinking settings, as the controls show them."""

    mode: str  # GenerationSettings.thinking: "auto", "on" or "off"
    budget: int  # GenerationSettings.thinking_budget: tokens, 0 for no limit
    switchable: bool = True  # the model can be told not to think (some always do: then only the budget)


class _Editor(QPlainTextEdit):
    """A text box that grows with its text (up to a limit) and sends on Enter."""

    submit = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.document().contentsChanged.connect(self.updateGeometry)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        enter = event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and not event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.submit.emit()
            return
        super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        line = self.fontMetrics().lineSpacing()
        lines = min(MAX_VISIBLE_LINES, max(1, int(self.document().size().height())))
        margins = self.contentsMargins()
        return QSize(200, lines * line + margins.top() + margins.bottom() + 12)

    def minimumSizeHint(self) -> QSize:
        return self.sizeHint()


class Composer(QFrame):
    """The text box, the Send/Stop button and the gauge of how full the context is."""

    submitted = Signal(str)
    stop_requested = Signal()
    thinking_changed = Signal(str, int)  # the user chose: mode ("auto", "on", "off"), budget (0: no limit)
    documents_chosen = Signal(list)  # the ids of the collections this chat should answer from
    manage_documents = Signal()  # "Manage documents…": the Documents dialog

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(4)

        self.editing: object | None = None  # the id of the message being edited, if any
        self.edit_banner = QWidget()
        banner = QHBoxLayout(self.edit_banner)
        banner.setContentsMargins(4, 0, 0, 0)
        banner_label = QLabel("Editing your message — sending it keeps the old version as a branch.")
        banner_label.setProperty("role", "muted")
        cancel = QPushButton("Cancel")
        cancel.setProperty("flat", True)
        cancel.clicked.connect(self.cancel_edit)
        banner.addWidget(banner_label, 1)
        banner.addWidget(cancel)
        self.edit_banner.hide()
        layout.addWidget(self.edit_banner)

        self.editor = _Editor()
        self.editor.setAccessibleName("Message")
        self.editor.submit.connect(self._submit)
        layout.addWidget(self.editor)

        row = QHBoxLayout()
        row.setSpacing(8)
        self.task_picker = QComboBox()
        self.task_picker.setAccessibleName("Task")
        self.task_picker.setToolTip("What the model does with your text")
        for label, kind, target in TEXT_TASKS:
            self.task_picker.addItem(label, (kind, target))
        self.task_picker.hide()
        row.addWidget(self.task_picker)
        self.documents_button = QToolButton()
        self.documents_button.setAccessibleName("Documents")
        self.documents_button.setToolTip("Answer from your own documents: attach collections to this chat")
        self.documents_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.documents_menu = QMenu(self.documents_button)
        self.documents_button.setMenu(self.documents_menu)
        row.addWidget(self.documents_button)
        self.thinking_mode = QComboBox()
        self.thinking_mode.setAccessibleName("Thinking")
        self.thinking_mode.setToolTip("Whether the model thinks before it answers, in this chat. Thinking "
                                      "takes longer and often gives better answers to hard questions.")
        for label, mode in THINKING_MODES:
            self.thinking_mode.addItem(label, mode)
        self.thinking_budget = QSpinBox()
        self.thinking_budget.setAccessibleName("Most thinking")
        self.thinking_budget.setToolTip("The most the model may think before it must answer, in tokens "
                                        "(pieces of words).")
        self.thinking_budget.setRange(0, THINKING_BUDGET_MAX)
        self.thinking_budget.setSingleStep(THINKING_BUDGET_STEP)
        self.thinking_budget.setSpecialValueText("No thinking limit")
        self.thinking_budget.setPrefix("At most ")
        self.thinking_budget.setSuffix(" tokens")
        self.thinking_budget.setKeyboardTracking(False)  # typed "512" is one choice, not 5, 51 and 512
        self._thinking_switchable = True
        self.thinking_mode.currentIndexChanged.connect(self._thinking_chosen)
        self.thinking_budget.valueChanged.connect(self._thinking_chosen)
        row.addWidget(self.thinking_mode)
        row.addWidget(self.thinking_budget)
        row.addStretch(1)
        self.gauge = QProgressBar()
        self.gauge.setObjectName("ContextGauge")
        self.gauge.setAccessibleName("How much of the model's short-term memory this chat uses")
        self.gauge.setTextVisible(False)
        self.gauge.setFixedWidth(90)
        self.gauge_label = QLabel()
        self.gauge_label.setProperty("role", "muted")
        row.addWidget(self.gauge_label)
        row.addWidget(self.gauge, 0, Qt.AlignmentFlag.AlignVCenter)
        self.send_button = QPushButton("Send")
        self.send_button.setProperty("primary", True)
        self.send_button.setAccessibleName("Send")
        self.send_button.clicked.connect(self._submit)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop the reply")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.hide()
        row.addWidget(self.send_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.show_tasks(False)
        self.set_context_usage(0, 0)
        self.show_thinking(None)
        self.show_documents([], [])

    def show_documents(self, collections: list[tuple[int, str]], attached: list[int]) -> None:
        """The collections there are, those this chat answers from ticked."""
        self.documents_menu.clear()
        for collection_id, name in collections:
            action = self.documents_menu.addAction(name)
            action.setCheckable(True)
            action.setChecked(collection_id in attached)
            action.setData(collection_id)
            action.toggled.connect(self._documents_toggled)
        if collections:
            self.documents_menu.addSeparator()
        self.documents_menu.addAction("Manage documents…").triggered.connect(self.manage_documents)
        self._show_attached(len([i for i, _name in collections if i in attached]))

    def attached(self) -> list[int]:
        return [action.data() for action in self.documents_menu.actions() if action.isChecked()]

    def _documents_toggled(self) -> None:
        chosen = self.attached()
        self._show_attached(len(chosen))
        self.documents_chosen.emit(chosen)

    def _show_attached(self, count: int) -> None:
        self.documents_button.setText(f"Documents ({count})" if count else "Documents")

    def show_thinking(self, choice: ThinkingChoice | None) -> None:
        """Show this chat's thinking choice, or hide the controls (None: the model does not think)."""
        self.thinking_mode.setVisible(choice is not None and choice.switchable)
        self.thinking_budget.setVisible(choice is not None)
        if choice is None:
            return
        for box in (self.thinking_mode, self.thinking_budget):
            box.blockSignals(True)  # showing what is stored is not a choice
        self.thinking_mode.setCurrentIndex(max(0, self.thinking_mode.findData(choice.mode)))
        self.thinking_budget.setValue(choice.budget)
        for box in (self.thinking_mode, self.thinking_budget):
            box.blockSignals(False)
        self._thinking_switchable = choice.switchable
        self._enable_budget()

    def _thinking_chosen(self) -> None:
        self._enable_budget()
        self.thinking_changed.emit(self.thinking_mode.currentData(), self.thinking_budget.value())

    def _enable_budget(self) -> None:
        """No budget for no thinking; a model that always thinks always has one."""
        self.thinking_budget.setEnabled(not self._thinking_switchable or self.thinking_mode.currentData() != "off")

    def show_tasks(self, shown: bool) -> None:
        """A text-task model (T5) answers: the picker replaces the chat's context gauge."""
        self.task_picker.setVisible(shown)
        self.editor.setPlaceholderText(
            "Text to translate or summarize…  (Enter runs it)" if shown
            else "Message the model…  (Enter sends, Shift+Enter for a new line)")
        if shown:
            self.set_context_usage(0, 0)

    def task(self) -> tuple[str, str] | None:
        """The chosen (task kind, target language), or None when chatting."""
        return self.task_picker.currentData() if self.task_picker.isVisibleTo(self) else None

    def set_busy(self, busy: bool) -> None:
        """While a reply streams, Send becomes Stop (the text box stays usable for drafting)."""
        self.send_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def set_context_usage(self, used_tokens: int, context_tokens: int) -> None:
        visible = context_tokens > 0
        self.gauge.setVisible(visible)
        self.gauge_label.setVisible(visible)
        if not visible:
            return
        percent = min(100, round(100 * used_tokens / context_tokens))
        self.gauge.setValue(percent)
        self.gauge_label.setText(f"Context {percent}%")
        tip = (
            "How much of the model's short-term memory this chat uses: "
            f"{used_tokens:,} of {context_tokens:,} tokens (pieces of words). "
            "When it is full, the oldest messages are left out."
        )
        self.gauge.setToolTip(tip)
        self.gauge_label.setToolTip(tip)

    def begin_edit(self, message_id: object, text: str) -> None:
        """Put a sent message back in the box; sending it makes a new branch beside the old one."""
        self.editing = message_id
        self.editor.setPlainText(text)
        self.edit_banner.show()
        self.editor.setFocus()

    def cancel_edit(self) -> None:
        if self.editing is not None:
            self.clear()
        self.edit_banner.hide()

    def clear(self) -> None:
        """Empty the box and end an edit: the message in it is stored."""
        self.editing = None
        self.edit_banner.hide()
        self.editor.clear()

    def _submit(self) -> None:
        if self.send_button.isHidden() or not self.send_button.isEnabled():  # busy: Stop is shown
            return
        text = self.editor.toPlainText().strip()
        if text:
            self.submitted.emit(text)  # the text stays until the window calls `clear`
