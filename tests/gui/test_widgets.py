"""The widgets on their own, without a model: rendering, clicks, keys, grouping, dialogs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QApplication

from slmchat.core.models.catalog import load_catalog
from slmchat.core.generation import Role
from slmchat.core.store.records import Conversation, SearchHit
from slmchat.gui import markdown
from slmchat.gui.about import versions
from slmchat.gui.chat_view import Action, ChatModel, ChatView, MessageView
from slmchat.gui.composer import Composer
from slmchat.gui.sidebar import Sidebar, group_name, snippet_html
from slmchat.gui.theme import load_theme

LIGHT = load_theme("light")


# --- markdown ---------------------------------------------------------------------------------
def test_markdown_highlights_code_and_keeps_its_raw_text_for_copy():
    rendered = markdown.render("Try:\n\n```python\nprint('hi')\n```\n", LIGHT)
    assert rendered.code_blocks == ["print('hi')\n"]
    assert 'href="copy-code:0"' in rendered.html
    assert "<span style=" in rendered.html  # Pygments colours


def test_markdown_shows_model_html_as_text_and_drops_unsafe_links():
    rendered = markdown.render("<script>alert(1)</script> [x](javascript:alert(1)) [ok](https://example.org)", LIGHT)
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "javascript:" not in rendered.html.replace("[x](javascript:alert(1))", "")
    assert 'href="https://example.org"' in rendered.html


def test_user_text_is_shown_exactly_as_typed():
    assert "**not bold**" in markdown.plain("**not bold** <b>").html
    assert "&lt;b&gt;" in markdown.plain("**not bold** <b>").html


def test_every_theme_variable_is_filled_in():
    for name in ("light", "dark"):
        sheet = load_theme(name).style_sheet()
        assert "@" not in sheet, f"{name}: an @variable has no value"


# --- the chat view ----------------------------------------------------------------------------
def _reply(text: str, **fields) -> MessageView:
    return MessageView(id=fields.pop("id", 2), role="assistant", text=text, model="Test model", **fields)


def _find_anchor(view: ChatView, row: int, wanted: str) -> QPointF:
    rect = view.visualRect(view.model().index(row))
    message = view.model().message(row)
    for y in range(rect.top(), rect.bottom(), 3):
        for x in range(rect.left(), rect.right(), 2):
            point = QPointF(x, y)
            if view._delegate.anchor_at(message, view.font(), rect, point) == wanted:
                return point
    raise AssertionError(f"no {wanted} link drawn in row {row}")


@pytest.fixture
def chat(qtbot):
    model = ChatModel()
    view = ChatView(model, LIGHT)
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    return model, view


def test_clicking_copy_code_hands_over_the_code_block(qtbot, chat):
    model, view = chat
    model.set_messages([
        MessageView(id=1, role="user", text="Show me code"),
        _reply("Here:\n\n```python\nx = 1\n```"),
    ])
    qtbot.waitExposed(view)
    point = _find_anchor(view, 1, "copy-code:0")
    with qtbot.waitSignal(view.action) as signal:
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=point.toPoint())
    assert signal.args == [1, Action.COPY_CODE.value, "x = 1\n"]


def test_branch_arrows_and_stopped_replies_offer_their_actions(qtbot, chat):
    model, view = chat
    model.set_messages([_reply("Half a rep", id=5, finish_reason="stopped", sibling_index=1, sibling_count=3)])
    qtbot.waitExposed(view)
    for anchor in ("act:previous", "act:next", "act:continue", "act:regenerate", "act:copy"):
        _find_anchor(view, 0, anchor)


def test_only_the_growing_message_is_laid_out_again(qtbot, chat):
    model, view = chat
    model.set_messages([MessageView(id=n, role="user" if n % 2 else "assistant", text=f"Message {n}")
                        for n in range(1, 60)] + [_reply("", id=60, streaming=True)])
    qtbot.waitExposed(view)
    QApplication.processEvents()
    before = {key: layout for key, layout in view._delegate._layouts.items()}
    model.append_text(59, "more words")
    QApplication.processEvents()
    view.viewport().repaint()
    after = view._delegate._layouts
    changed = [key for key in before if after[key] is not before[key]]
    assert changed == [60]


def test_a_changed_message_is_redrawn_even_when_rebuilt_from_the_database(qtbot, chat):
    model, view = chat
    model.set_messages([_reply("", id=7, streaming=True)])
    qtbot.waitExposed(view)
    QApplication.processEvents()
    empty_height = view.visualRect(model.index(0)).height()
    model.set_messages([_reply("A much longer answer.\n\nWith a second paragraph.\n\nAnd a third.", id=7)])
    QApplication.processEvents()
    assert view.visualRect(model.index(0)).height() > empty_height


# --- the composer -----------------------------------------------------------------------------
def test_enter_sends_and_shift_enter_starts_a_new_line_and_the_text_stays_until_stored(qtbot):
    composer = Composer()
    qtbot.addWidget(composer)
    qtbot.keyClicks(composer.editor, "first line")
    qtbot.keyClick(composer.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer.editor, "second line")
    with qtbot.waitSignal(composer.submitted) as signal:
        qtbot.keyClick(composer.editor, Qt.Key.Key_Return)
    assert signal.args == ["first line\nsecond line"]
    assert composer.editor.toPlainText() == "first line\nsecond line"  # until the window says it is stored
    composer.clear()
    assert composer.editor.toPlainText() == ""


def test_the_context_gauge_says_how_much_of_the_models_short_term_memory_the_chat_uses(qtbot):
    composer = Composer()
    qtbot.addWidget(composer)
    composer.set_context_usage(1024, 4096)
    assert composer.gauge.value() == 25
    assert composer.gauge_label.text() == "Context 25%"
    assert "short-term memory" in composer.gauge.toolTip()
    assert "1,024 of 4,096 tokens" in composer.gauge.toolTip()


# --- the sidebar ------------------------------------------------------------------------------
def _conversation(id: int, updated: datetime, pinned: bool = False) -> Conversation:
    return Conversation(id=id, title=f"Chat {id}", created=updated, updated=updated, model="", system_prompt="",
                        persona_id=None, settings=None, pinned=pinned, deleted_at=None, current_leaf_id=None)


def test_conversations_are_grouped_by_when_they_were_last_used():
    now = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)
    assert group_name(_conversation(1, now - timedelta(hours=2)), now) == "Today"
    assert group_name(_conversation(2, now - timedelta(days=3)), now) == "Previous 7 days"
    assert group_name(_conversation(3, now - timedelta(days=30)), now) == "Older"
    assert group_name(_conversation(4, now - timedelta(days=30), pinned=True), now) == "Pinned"


def test_the_sidebar_lists_groups_with_headers(qtbot):
    sidebar = Sidebar()
    qtbot.addWidget(sidebar)
    now = datetime.now().astimezone()
    sidebar.set_conversations([_conversation(1, now, pinned=True), _conversation(2, now),
                               _conversation(3, now - timedelta(days=40))], current_id=2)
    texts = [sidebar.list.item(row).text() for row in range(sidebar.list.count())]
    assert texts == ["PINNED", "Chat 1", "TODAY", "Chat 2", "OLDER", "Chat 3"]
    assert sidebar.list.currentItem().text() == "Chat 2"


def test_a_search_hit_found_in_a_replys_thinking_says_so_and_an_answer_hit_does_not(qtbot):
    sidebar = Sidebar()
    qtbot.addWidget(sidebar)
    now = datetime.now(timezone.utc)
    sidebar.set_search_results([
        SearchHit(1, "Aardvarks", 2, Role.ASSISTANT, "\x02Termites\x03 first", now, in_thinking=True),
        SearchHit(3, "Ants", 4, Role.ASSISTANT, "\x02Termites\x03, mostly", now),
    ])
    spoken = [sidebar.list.item(row).data(Qt.ItemDataRole.AccessibleTextRole) for row in range(2)]
    assert spoken == ["Aardvarks: Thinking: \x02Termites\x03 first", "Ants: \x02Termites\x03, mostly"]
    shown = [sidebar.list.itemWidget(sidebar.list.item(row)).text() for row in range(2)]
    assert "<i>Thinking:</i> <b>Termites</b>" in shown[0] and "Thinking" not in shown[1]


def test_search_snippets_are_safe_rich_text():
    assert snippet_html("a <b> \x02match\x03 here") == "a &lt;b&gt; <b>match</b> here"


# --- dialogs ----------------------------------------------------------------------------------
def test_about_lists_every_part_with_its_version():
    names = [name for name, _ in versions("b1234")]
    assert names == ["slmchat", "llama-cpp-python", "llama.cpp build", "Qt", "Python"]


def test_the_model_manager_shows_a_card_per_catalog_model(qtbot, make_window):
    window = make_window()
    manager = window.model_manager(load_catalog())
    qtbot.addWidget(manager)
    catalog = load_catalog()
    assert len(manager.cards) == len(catalog)
    starter = next(card for card in manager.cards if card.entry.id == "smollm2-135m-instruct")
    assert starter.use_button.isVisibleTo(manager)  # it comes with the app
    unsupported = next(card for card in manager.cards if not card.entry.supported)
    assert not unsupported.download_button.isEnabled()
    assert "Can't run" in unsupported.status.text()


def test_settings_are_saved_and_applied(qtbot, make_window):
    from slmchat.settings import load_settings

    window = make_window()
    dialog = window.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.font_size.setValue(12.0)
    dialog.context_size.setValue(2048)
    dialog.temperature.setValue(0.3)
    dialog.save()
    store = window.controller.store
    assert load_settings(store).theme == "dark"
    assert load_settings(store).generation.temperature == pytest.approx(0.3)
    assert load_settings(store).context_size == 2048
    assert window.theme.is_dark
    assert QApplication.instance().font().pointSizeF() == pytest.approx(12.0)


def test_first_run_opens_on_the_welcome_with_the_starter_model(qtbot, make_window):
    window = make_window()
    assert window.pages.currentWidget() is window.welcome
    assert window.welcome.start_button.isEnabled()
    assert "SmolLM2 135M Instruct" in window.welcome.starter_note.text()


def test_rename_pin_and_delete_with_undo_from_the_sidebar(qtbot, make_window, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    window = make_window()
    store = window.controller.store
    first = store.new_conversation(title="Holiday plans")
    second = store.new_conversation(title="Recipes")
    window.refresh_conversations()

    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("Summer holiday", True))
    window.sidebar.rename_requested.emit(first.id)
    window.sidebar.pin_requested.emit(first.id, True)
    texts = [window.sidebar.list.item(row).text() for row in range(window.sidebar.list.count())]
    assert texts == ["PINNED", "Summer holiday", "TODAY", "Recipes"]

    window.sidebar.delete_requested.emit(second.id)
    assert "Recipes" not in [window.sidebar.list.item(r).text() for r in range(window.sidebar.list.count())]
    assert window.toast.isVisible() and "Recipes" in window.toast.label.text()
    window.toast.undo_button.click()
    assert store.conversation(second.id).deleted_at is None
    assert "Recipes" in [window.sidebar.list.item(r).text() for r in range(window.sidebar.list.count())]


def test_keyboard_shortcuts_reach_their_controls(qtbot, make_window):
    window = make_window()
    window.pages.setCurrentIndex(0)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search_box.hasFocus()
    qtbot.keyClick(window.sidebar.search_box, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.composer.editor.hasFocus()
    for widget in (window.composer.editor, window.composer.send_button, window.model_bar.switcher,
                   window.sidebar.search_box, window.sidebar.new_button, window.chat_view):
        assert widget.accessibleName(), widget


def test_opening_a_long_chat_renders_only_the_messages_on_screen(qtbot, chat):
    model, view = chat
    model.set_messages([MessageView(id=n, role="user" if n % 2 else "assistant",
                                    text=f"Message {n}\n\n- a point\n- another point") for n in range(1, 301)])
    qtbot.waitExposed(view)
    qtbot.waitUntil(lambda: view.verticalScrollBar().value() == view.verticalScrollBar().maximum())
    QApplication.processEvents()
    rendered = set(view._delegate._layouts)
    assert 300 in rendered  # the newest message is on screen, drawn for real
    assert len(rendered) < 40, f"{len(rendered)} of 300 messages were rendered"
    last = view.visualRect(model.index(299))
    assert view.viewport().rect().contains(last.center())
