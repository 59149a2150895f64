"""The window's settings live in one place, `slmchat.settings.Settings`, and survive upgrades."""

from __future__ import annotations

from slmchat.core.generation import GenerationSettings, OverflowPolicy
from slmchat.core.store.store import Store
from slmchat.settings import Settings, load_settings, save_settings


def test_engine_and_text_size_choices_round_trip_with_the_other_settings(tmp_path):
    with Store(tmp_path / "chats.db") as store:
        chosen = Settings(theme="dark", font_size=13.0, context_size=2048, overflow=OverflowPolicy.REFUSE,
                          gpu_layers=12)
        save_settings(store, chosen)
        assert load_settings(store) == chosen


def test_choices_saved_by_the_previous_version_are_kept(tmp_path):
    """They were stored as "preferences.<name>" before they joined Settings."""
    with Store(tmp_path / "chats.db") as store:
        store.write_settings({"preferences.context_size": 8192, "preferences.overflow": "refuse",
                              "preferences.font_size": 12.5, "preferences.gpu_layers": 0})
        loaded = load_settings(store)
    assert (loaded.context_size, loaded.overflow, loaded.font_size, loaded.gpu_layers) == (
        8192, OverflowPolicy.REFUSE, 12.5, 0)


def test_a_damaged_value_falls_back_to_its_default_and_the_app_still_starts(tmp_path):
    with Store(tmp_path / "chats.db") as store:
        store.write_settings({"overflow": "sometimes", "context_size": "lots", "theme": "dark"})
        loaded = load_settings(store)
    assert (loaded.overflow, loaded.context_size, loaded.theme) == (OverflowPolicy.TRIM, 4096, "dark")


def test_the_window_asks_the_engine_for_the_saved_context_size(qtbot, make_window):
    window = make_window(context_size=1536)
    model = next(m for m in window.library.list() if m.usable)
    assert window.engine_config(model).n_ctx == 1536


def test_an_empty_or_relative_data_folder_keeps_the_dialog_open_and_says_why(qtbot, make_window):
    from PySide6.QtWidgets import QDialog

    from slmchat.paths import read_data_folder

    window = make_window()
    dialog = window.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.show()
    for typed, reason in (("", "the box is empty"), ("chats here", "“chats here” is not a full path")):
        dialog.data_folder.setText(typed)
        dialog.accept()
        assert dialog.isVisible() and dialog.result() != QDialog.DialogCode.Accepted
        assert dialog.data_folder_error.isVisibleTo(dialog) and reason in dialog.data_folder_error.text()
        assert dialog.tabs.currentWidget() is dialog.data_page
    assert read_data_folder(window.paths) is None
    dialog.data_folder.setText(str(window.paths.data))
    dialog.accept()
    assert dialog.result() == QDialog.DialogCode.Accepted and not dialog.data_folder_error.isVisibleTo(dialog)


def test_the_data_tab_lists_backups_and_restores_one_after_a_confirmation(qtbot, make_window, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from slmchat.core.store.backup import list_backups, make_backup

    window = make_window()
    store = window.controller.store
    store.add_user_message(store.new_conversation().id, "Kept in the backup")
    make_backup(store.path)
    store.add_user_message(store.new_conversation().id, "Written after the backup")
    dialog = window.settings_dialog()
    qtbot.addWidget(dialog)
    assert dialog.backups.count() == 1 and dialog.backups.item(0).text().endswith("— 1 conversation")
    assert not dialog.restore_button.isEnabled()

    asked, told = [], []
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text: asked.append(text)
                        or QMessageBox.StandardButton.No)
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text: told.append(text))
    dialog.backups.setCurrentRow(0)
    dialog.restore_button.click()
    assert len(asked) == 1 and told == []  # answered No: nothing changed
    assert len(store.conversations()) == 2

    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(dialog.restored) as restored:
        dialog.restore_button.click()
    assert [c.title for c in store.conversations()] == ["Kept in the backup"]
    assert told and "its conversations are in the list" in told[0]
    sidebar = window.sidebar
    shown = [sidebar.list.item(row).text() for row in range(sidebar.list.count())]
    assert "Kept in the backup" in shown and "Written after the backup" not in shown  # the list was reread
    undo = restored.args[0]
    assert undo.conversations == 2  # the conversations from before the restore, kept
    assert dialog.backups.count() == 2 == len(list_backups(store.path))


def test_saving_a_chats_sampling_keeps_its_thinking_and_speculative_choices(qtbot, make_window):
    window = make_window()
    chosen = GenerationSettings(thinking="off", thinking_budget=300, speculative="off", temperature=0.3)
    chat = window.controller.store.new_conversation(title="Tuned", settings=chosen)
    window.controller.open_conversation(chat.id)
    dialog = window.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.temperature.setValue(0.9)
    dialog.save()
    stored = window.controller.store.conversation(chat.id).settings
    assert (stored.thinking, stored.thinking_budget, stored.speculative) == ("off", 300, "off")
    assert stored.temperature == 0.9
