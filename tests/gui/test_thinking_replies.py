"""A thinking model's reply in the window: its thinking folded above the answer ("Thinking…" while
it thinks, "Thought for 12 s" after), unfolded with a click; and this chat's thinking controls.

Replies stored as the recording path stores a thinking model's (answer and thinking apart) are
opened in the real window; the chat view is fed what the controller shows of a growing raw reply;
and a real thinking model (a tiny GGUF on Qwen3's real template whose tokens are scripted, as the
engine's own thinking tests use) answers in the real window through the controller and the engine
process, thinking on, within a budget, and off.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import tiny_gguf
from gui_helpers import MODEL_TIMEOUT_MS, start_chatting, wait_until_idle
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtWidgets import QApplication

from slmchat.core.generation import (
    FinishReason,
    GenerationSettings,
    GenerationStats,
    ThinkingMarkers,
    split_reply,
)
from slmchat.gui.chat_view import Action, ChatModel, ChatView, MessageView
from slmchat.gui.composer import Composer, ThinkingChoice
from slmchat.core.store.store import Store
from slmchat.gui.sidebar import _CONVERSATION
from slmchat.gui.theme import load_theme
from slmchat.paths import Paths

THINKING = ("The user asks about aardvarks. They are African mammals that dig burrows.\n\n"
            "Their diet: mostly ants and termites, found at night with a long sticky tongue.")
ANSWER = "Aardvarks eat **ants and termites**, which they find at night."
# A folder in which to keep pictures of the window, to look at them (else the test's own folder).
SCREENSHOTS_FOLDER = "SLMCHAT_TEST_SCREENSHOTS"
TOGGLE = f"act:{Action.THINKING.value}"


def store_reply(thinking: str, answer: str, seconds: float | None) -> None:
    """A conversation with one answered question in the data folder, stored as the recording path
    stores a reply (its thinking apart), before the window opens on it."""
    with Store(Paths.default().ensure().database) as store:
        conversation = store.new_conversation(title="Aardvarks", model="qwen3-0.6b")
        store.add_user_message(conversation.id, "What do aardvarks eat?")
        reply = store.start_reply(conversation.id, model="Qwen3 0.6B")
        store.finish_reply(reply.id, answer, GenerationStats(completion_tokens=80, time_to_first_token_s=0.4,
                                                             decode_tokens_per_s=31.0),
                           thinking=thinking, thinking_seconds=seconds)


def open_first_conversation(qtbot, window) -> None:
    """What the user does: click the conversation in the sidebar."""
    items = [window.sidebar.list.item(row) for row in range(window.sidebar.list.count())]
    [item] = [item for item in items if item.data(_CONVERSATION) is not None]
    window.sidebar.list.itemClicked.emit(item)
    settle(qtbot)


def drawn_text(view: ChatView, row: int) -> str:
    """All the text the delegate draws for `row`, in its documents' order."""
    message = view.model().message(row)
    layout = view.itemDelegate()._layout(message, view.font(), view.viewport().width())
    return "\n".join(doc.toPlainText() for doc, _pos, _code in layout.docs)


def anchors(view: ChatView, row: int) -> set[str]:
    """Every link drawn in the visible part of `row`, found by pointing at it."""
    rect = view.visualRect(view.model().index(row))
    message = view.model().message(row)
    return {view.itemDelegate().anchor_at(message, view.font(), QRectF(rect), QPointF(x, y))
            for y in range(max(0, rect.top()), min(rect.bottom(), view.viewport().height()), 3)
            for x in range(rect.left(), rect.right(), 4)} - {""}


def settle(qtbot) -> None:
    qtbot.wait(30)
    QApplication.processEvents()


def test_a_stored_thinking_reply_opens_folded_and_a_click_unfolds_its_thinking(qtbot, make_window, tmp_path):
    screenshots = Path(os.environ.get(SCREENSHOTS_FOLDER, tmp_path))
    store_reply(THINKING, ANSWER, 12.4)
    window = make_window()
    window.resize(1000, 700)
    open_first_conversation(qtbot, window)
    view = window.chat_view
    assert window.chat_stack.currentWidget() is view

    reply = window.controller.chat_model.message(1)
    assert (reply.text, reply.thinking, reply.thinking_unfolded) == (ANSWER, THINKING, False)
    folded = drawn_text(view, 1)
    assert folded.startswith("▸ Thought for 12 s\nAardvarks eat ants and termites")
    assert "sticky tongue" not in folded  # folded: the thinking is not drawn
    folded_height = view.visualRect(view.model().index(1)).height()
    assert TOGGLE in anchors(view, 1)

    view.trigger(1, TOGGLE)  # what a click on "Thought for 12 s" does
    settle(qtbot)
    unfolded = drawn_text(view, 1)
    assert unfolded.startswith("▾ Thought for 12 s\nThe user asks about aardvarks.")
    assert unfolded.index("sticky tongue") < unfolded.index("Aardvarks eat ants")  # above the answer
    assert view.visualRect(view.model().index(1)).height() > folded_height
    window.grab().save(str(screenshots / "thinking-light.png"))

    light = window.settings
    window.apply_settings(dataclasses.replace(light, theme="dark"))
    settle(qtbot)
    assert drawn_text(view, 1) == unfolded
    window.grab().save(str(screenshots / "thinking-dark.png"))
    window.apply_settings(light)

    view.trigger(1, TOGGLE)
    settle(qtbot)
    assert drawn_text(view, 1) == folded
    assert window.controller.store.message(reply.id).thinking == THINKING  # unfolding is only presentation


def test_a_reply_that_did_not_think_has_no_thinking_header(qtbot, make_window):
    store_reply("", "Termites, mostly.", None)
    window = make_window()
    open_first_conversation(qtbot, window)
    assert drawn_text(window.chat_view, 1).startswith("Termites, mostly.")
    assert TOGGLE not in anchors(window.chat_view, 1)


RAW_PIECES = ["<think>", "The user", " asks about", " aardvarks.\n\n", "Ants,", " termites.", "</think>",
              "\n\nAardvarks", " eat ants", " and termites."]


@pytest.fixture
def chat(qtbot):
    model = ChatModel()
    view = ChatView(model, load_theme("light"))
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    model.set_messages([MessageView(id=n, role="user" if n % 2 else "assistant", text=f"Message {n}")
                        for n in range(1, 60)]
                       + [MessageView(id=60, role="assistant", text="", model="Qwen3", streaming=True)])
    qtbot.waitExposed(view)
    settle(qtbot)
    return model, view


def test_a_streaming_reply_shows_thinking_then_how_long_it_thought_as_its_answer_streams(qtbot, chat):
    model, view = chat
    row = model.rowCount() - 1
    raw, shown = "", []
    for number, piece in enumerate(RAW_PIECES):
        raw += piece
        split = split_reply(raw, ThinkingMarkers("<think>", "</think>"))
        model.update(row, text=split.answer, thinking=split.thinking, thinking_open=split.thinking_open,
                     thinking_seconds=None if split.thinking_open else 7.0)
        settle(qtbot)
        shown.append(drawn_text(view, row).split("\n")[0])
    assert shown[:6] == ["▸ Thinking…"] * 6  # folded while it thinks: no answer, no "Writing…" body
    assert shown[6:] == ["▸ Thought for 7 s"] * 4
    assert "Aardvarks eat ants and termites." in drawn_text(view, row)
    assert "asks about" not in drawn_text(view, row)


def test_unfolded_thinking_streams_without_laying_out_the_other_rows(qtbot, chat, monkeypatch):
    model, view = chat
    row = model.rowCount() - 1
    model.update(row, thinking="The user asks", thinking_open=True)
    view.trigger(row, TOGGLE)
    settle(qtbot)
    assert model.message(row).thinking_unfolded
    height = view.visualRect(model.index(row)).height()
    asked: list[int] = []
    delegate = view.itemDelegate()
    real = type(delegate).sizeHint
    monkeypatch.setattr(type(delegate), "sizeHint", lambda self, option, index: (
        asked.append(index.row()), real(self, option, index))[1])
    for word in (" about", " aardvarks"):
        model.update(row, thinking=model.message(row).thinking + word)
        settle(qtbot)
    assert "The user asks about aardvarks" in drawn_text(view, row)
    assert view.visualRect(model.index(row)).height() == height  # still one line of thinking
    assert [asked_row for asked_row in asked if asked_row != row] == []


def test_the_thinking_controls_show_the_chats_choice_and_report_the_users(qtbot):
    composer = Composer()
    qtbot.addWidget(composer)
    composer.show()
    chosen: list[tuple[str, int]] = []
    composer.thinking_changed.connect(lambda mode, budget: chosen.append((mode, budget)))
    assert not composer.thinking_mode.isVisible()  # hidden until a model that thinks is loaded

    composer.show_thinking(ThinkingChoice("off", 1024))
    assert composer.thinking_mode.isVisible() and composer.thinking_budget.isVisible()
    assert (composer.thinking_mode.currentData(), composer.thinking_budget.value()) == ("off", 1024)
    assert not composer.thinking_budget.isEnabled()  # no thinking, no budget
    assert chosen == []  # showing the stored choice is not the user choosing

    composer.thinking_mode.setCurrentIndex(composer.thinking_mode.findData("on"))
    composer.thinking_budget.setValue(0)
    assert chosen == [("on", 1024), ("on", 0)]
    assert composer.thinking_budget.isEnabled() and composer.thinking_budget.text() == "No thinking limit"
    composer.thinking_budget.selectAll()
    qtbot.keyClicks(composer.thinking_budget, "512")
    qtbot.keyClick(composer.thinking_budget, Qt.Key.Key_Return)
    assert chosen[2:] == [("on", 512)]  # typing a number is one choice, not one per digit

    composer.show_thinking(None)
    assert not composer.thinking_mode.isVisible()


@pytest.mark.slow
def test_a_chat_keeps_its_thinking_choice_and_a_model_that_does_not_think_hides_the_controls(qtbot, make_window):
    window = make_window(max_tokens=8)
    offered: list[object] = []
    window.controller.thinking_options.connect(offered.append)
    start_chatting(qtbot, window)
    assert offered and offered[-1] is None  # SmolLM2 does not think

    window.controller.set_thinking("off", 512)  # before the first message: the new chat is made with it
    assert window.controller.send("Say hi.")
    wait_until_idle(qtbot, window)
    conversation = window.controller.store.conversation(window.controller.conversation_id)
    assert conversation.settings == GenerationSettings(max_tokens=8, temperature=0.0, seed=7, thinking="off",
                                                      thinking_budget=512)
    window.controller.set_thinking("on", 0)
    settings = window.controller.store.conversation(conversation.id).settings
    assert (settings.thinking, settings.thinking_budget) == ("on", 0)
    reply = window.controller.store.branch(conversation.id)[-1]
    assert reply.content and reply.thinking == "" and reply.thinking_seconds is None


# --- a real thinking model in the window ----------------------------------------------------------------
QWEN3_TEMPLATE = Path(__file__).parents[1] / "core" / "engine" / "templates" / "qwen3.jinja"


@pytest.fixture
def thinking_model(tmp_path: Path) -> Path:
    """A tiny GGUF on Qwen3's real chat template whose next token is scripted (tests/tiny_gguf.py):
    after the generation prompt it thinks "okay" letter by letter, closes the block and answers "A"."""
    template = QWEN3_TEMPLATE.read_text(encoding="utf-8").split("\n", 1)[1].removesuffix("\n")  # line 1: its origin
    steps = {"<think>": "o", "o": "k", "k": "a", "a": "y", "y": "</think>", "</think>": tiny_gguf.NEWLINES,
             tiny_gguf.NEWLINES: "A"}
    return tiny_gguf.write_scripted_chat(tmp_path / "Thinker-Qwen3.gguf", template, eos="<|im_end|>",
                                         script={tiny_gguf.NEWLINE: "<think>", **steps})


def load_thinking_model(qtbot, window, path: Path) -> None:
    model = window.library.import_file(path, copy=False)
    window.switch_model(model.id)
    qtbot.waitUntil(lambda: window.session.engine is not None and window.session.info.thinking is not None,
                    timeout=MODEL_TIMEOUT_MS)


def headers_while_streaming(window) -> list[str]:
    """The first line the view draws for the reply row at each update while it streams."""
    seen: list[str] = []
    model, view = window.controller.chat_model, window.chat_view

    def changed(top, _bottom, _roles) -> None:
        if model.message(top.row()).streaming:
            seen.append(drawn_text(view, top.row()).split("\n")[0])

    model.dataChanged.connect(changed)
    return seen


@pytest.mark.slow
def test_a_thinking_models_reply_streams_its_thinking_apart_and_is_stored_apart(qtbot, make_window,
                                                                                thinking_model):
    window = make_window(max_tokens=32)
    offered: list[object] = []
    window.controller.thinking_options.connect(offered.append)
    load_thinking_model(qtbot, window, thinking_model)
    assert offered[-1] == ThinkingChoice("auto", 0, switchable=True)  # Qwen3's template can switch it off
    composer = window.composer
    assert composer.thinking_mode.isVisibleTo(composer) and composer.thinking_budget.isVisibleTo(composer)

    seen = headers_while_streaming(window)
    assert window.controller.send("Hi")
    wait_until_idle(qtbot, window)
    assert "▸ Thinking…" in seen  # folded while it thought
    assert seen[-1].startswith("▸ Thought for")  # then how long, as the answer came

    conversation_id = window.controller.conversation_id
    stored = window.controller.store.branch(conversation_id)[-1]
    assert (stored.thinking, stored.content) == ("okay", "A")
    assert stored.thinking_seconds is not None and stored.thinking_seconds >= 0
    shown = window.controller.chat_model.message(1)
    assert (shown.thinking, shown.text, shown.streaming) == ("okay", "A", False)

    # The user's choice in the composer reaches the chat: at most two tokens of thinking, then the
    # engine closes the block itself.
    composer.thinking_mode.setCurrentIndex(composer.thinking_mode.findData("on"))
    composer.thinking_budget.setValue(2)
    assert window.controller.store.conversation(conversation_id).settings.thinking_budget == 2
    assert window.controller.send("Again")
    wait_until_idle(qtbot, window)
    budgeted = window.controller.store.branch(conversation_id)[-1]
    assert (budgeted.thinking, budgeted.content) == ("ok", "A")

    window.controller.set_thinking("off", 0)
    assert window.controller.send("Once more")
    wait_until_idle(qtbot, window)
    plain = window.controller.store.branch(conversation_id)[-1]
    assert (plain.thinking, plain.content, plain.thinking_seconds) == ("", "A", None)
    assert TOGGLE not in anchors(window.chat_view, window.controller.chat_model.rowCount() - 1)
    assert [m.content for m in window.controller.store.branch(conversation_id)] == [
        "Hi", "A", "Again", "A", "Once more", "A"]  # what the next turn sends back: no thinking


@pytest.mark.slow
def test_continue_on_a_reply_stopped_while_thinking_thinks_on_and_then_answers(qtbot, make_window, thinking_model):
    with Store(Paths.default().ensure().database) as store:
        conversation = store.new_conversation(title="Stopped")
        store.add_user_message(conversation.id, "Hi")
        stopped = store.start_reply(conversation.id, model="Thinker")
        # stopped two letters into thinking "okay": from "ka" the scripted model goes on "y" (from scratch, "o")
        store.finish_reply(stopped.id, "", GenerationStats(finish_reason=FinishReason.STOPPED), thinking="ka",
                           thinking_seconds=1.0)
    window = make_window(max_tokens=32)
    open_first_conversation(qtbot, window)
    load_thinking_model(qtbot, window, thinking_model)
    assert window.controller.chat_model.message(1).can_continue

    window.chat_view.trigger(1, f"act:{Action.CONTINUE.value}")  # the reply's Continue link
    wait_until_idle(qtbot, window)
    continued = window.controller.store.branch(window.controller.conversation_id)[-1]
    assert continued.id != stopped.id  # a new version beside the stopped one
    assert (continued.thinking, continued.content) == ("kay", "A")  # thought on from where it stopped
