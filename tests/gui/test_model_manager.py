"""The model manager against the loopback hub: download from a catalog card, cancel, hub search, import."""

from __future__ import annotations

import shutil

import pytest
from hub_server import FakeHub, fake_hub  # noqa: F401 - the fixture
from PySide6.QtWidgets import QMessageBox

from slmchat.core.models.catalog import load_catalog
from slmchat.core.models.hardware import detect_machine

REPO = "mradermacher/SmolLM2-360M-Instruct-GGUF"  # a catalog entry's default download
FILE = "SmolLM2-360M-Instruct.Q4_K_M.gguf"


@pytest.fixture
def manager(qtbot, make_window, fake_hub: FakeHub, smollm2_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HF_ENDPOINT", fake_hub.url)
    fake_hub.add_repo(REPO, {FILE: smollm2_path}, downloads=50)  # SmolLM2's real bytes under this name
    window = make_window()
    dialog = window.model_manager(load_catalog())
    qtbot.addWidget(dialog)
    dialog.show()
    card = next(card for card in dialog.cards if card.file and card.file.file == FILE)
    return window, dialog, card


def test_another_model_under_a_catalog_file_s_name_is_downloaded_then_refused_and_nothing_kept(qtbot, manager):
    """The loopback hub serves SmolLM2-135M's real bytes under the 360M entry's file name: the bytes
    arrive (progress to the end), then the header check refuses them with a sentence that says why."""
    window, dialog, card = manager
    progress: list[float] = []
    window.downloads.progress.connect(lambda _key, p: progress.append(p.fraction))
    card.download_button.click()
    assert card.cancel_button.isVisible() and card.pause_button.isVisible()
    qtbot.waitUntil(lambda: "holds a different model" in card.status.text(), timeout=60_000)

    assert progress and progress[-1] == pytest.approx(1.0)
    assert card.download_button.isVisible() and not card.use_button.isVisible()
    assert window.library.find_download(REPO, FILE) is None
    assert not any(window.paths.downloads.glob("*.part")) and not any(window.paths.models.glob("*.gguf"))


def test_a_hub_search_download_shows_progress_and_the_model_becomes_usable(qtbot, manager, fake_hub: FakeHub,  # noqa: F811
                                                                         smollm2_path):
    window, dialog, _card = manager
    fake_hub.add_repo("someone/my-small-chat-GGUF", {"my-small-chat.Q4_1.gguf": smollm2_path}, downloads=3)
    search = dialog.tabs.widget(2)
    search.query.setText("my-small-chat")
    search.query.returnPressed.emit()
    qtbot.waitUntil(lambda: search.repos.count() == 1, timeout=30_000)
    search.repos.setCurrentRow(0)
    qtbot.waitUntil(lambda: search.files.count() == 1, timeout=30_000)
    search.files.setCurrentRow(0)
    progress: list[float] = []
    window.downloads.progress.connect(lambda _key, p: progress.append(p.fraction))
    search.download_button.click()
    qtbot.waitUntil(lambda: "is ready" in search.status.text(), timeout=60_000)

    assert progress and progress[-1] == pytest.approx(1.0)
    downloaded = window.library.find_download("someone/my-small-chat-GGUF", "my-small-chat.Q4_1.gguf")
    assert downloaded is not None and downloaded.usable
    assert window.model_bar.switcher.findData(downloaded.id) >= 0  # it joined the model switcher


def test_cancel_during_a_stalled_download_registers_nothing(qtbot, manager, fake_hub: FakeHub):  # noqa: F811
    window, dialog, card = manager
    fake_hub.faults.stall_at = 4 * 1024 * 1024
    card.download_button.click()
    qtbot.waitUntil(fake_hub.stalled.is_set, timeout=30_000)
    card.cancel_button.click()
    qtbot.waitUntil(lambda: card.download_button.isVisible(), timeout=30_000)
    assert card.download_button.text() == "Download"
    assert window.library.find_download(REPO, FILE) is None
    assert not any(window.paths.downloads.glob("*.part"))


def test_hub_search_lists_repos_and_their_files_with_fit_labels(qtbot, manager):
    window, dialog, _card = manager
    window.set_machine(detect_machine(probe_backend=False))  # as start-up does, off the GUI thread
    search = dialog.tabs.widget(2)
    search.query.setText("360M")
    search.query.returnPressed.emit()
    qtbot.waitUntil(lambda: search.repos.count() == 1, timeout=30_000)
    assert REPO in search.repos.item(0).text()
    search.repos.setCurrentRow(0)
    qtbot.waitUntil(lambda: search.files.count() == 1, timeout=30_000)
    assert FILE in search.files.item(0).text()
    assert search.files.item(0).text().endswith("Fits")  # read from the file's header on the hub
    assert "GB" in search.files.item(0).toolTip()


def test_importing_a_gguf_adds_it_to_my_models(qtbot, manager, smollm2_path, tmp_path, monkeypatch):
    window, dialog, _card = manager
    own_file = tmp_path / "my-own-model.gguf"
    shutil.copy(smollm2_path, own_file)
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.No)
    rows_before = dialog.my_models.list.count()
    dialog.my_models.import_path(own_file)  # what the button and a drop both end in
    qtbot.waitUntil(lambda: dialog.my_models.list.count() == rows_before + 1, timeout=30_000)
    assert any(model.path == own_file for model in window.library.list())


def test_a_file_that_is_not_a_model_is_refused_calmly(qtbot, manager, tmp_path, monkeypatch):
    window, dialog, _card = manager
    not_a_model = tmp_path / "notes.gguf"
    not_a_model.write_text("my shopping list")
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.No)
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text: warnings.append(text))
    dialog.my_models.import_path(not_a_model)
    qtbot.waitUntil(lambda: bool(warnings), timeout=30_000)
    assert "GGUF" in warnings[0] and "Traceback" not in warnings[0]


def test_removing_a_model_takes_it_out_of_the_list_and_the_switcher(qtbot, manager, smollm2_path, tmp_path,
                                                                     monkeypatch):
    window, dialog, _card = manager
    own_file = tmp_path / "to-remove.gguf"
    shutil.copy(smollm2_path, own_file)
    model = window.library.import_file(own_file, copy=False)
    window.refresh_models()
    dialog.my_models.refresh()
    assert window.model_bar.switcher.findData(model.id) >= 0
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.StandardButton.Yes)
    dialog.my_models._remove(model)
    assert all(m.id != model.id for m in window.library.list())
    assert window.model_bar.switcher.findData(model.id) < 0
    assert own_file.exists()  # used where it was: slmchat forgets it but never deletes the user's file


def test_cards_say_whose_terms_apply_and_which_downloads_slmchat_has_not_verified(qtbot, manager):
    _window, dialog, _card = manager
    cards = {card.entry.id: card for card in dialog.cards}
    llama = cards["llama-3.2-1b-instruct"]  # an open GGUF of a gated original
    assert "publisher's terms" in llama.terms.text() and llama.entry.gated_terms_url in llama.terms.text()
    assert llama.file.verified and llama.unverified is None  # pinned: revision, size, sha256
    unpinned = next(card for card in dialog.cards if card.file and card.file.repo and not card.file.verified)
    assert unpinned.unverified.text().startswith("Not yet verified by slmchat")
    assert unpinned.file.unverified_reason[:30] in unpinned.unverified.toolTip()
    assert cards["smollm2-360m-instruct"].terms is None  # Apache-2.0: no publisher's gate
    assert not cards["smollm2-135m-instruct"].unverified.isVisibleTo(dialog)  # on this computer already
