"""Models that are not chat models, in the window: T5's task picker (Translate / Summarize),
search by meaning (MiniLM) and a message's sentiment (a DistilBERT SST-2 classifier).

Tiny T5 and DistilBERT GGUFs with random weights (tests/tiny_gguf.py) and the real
all-MiniLM-L6-v2 (tests/minilm_gguf.py). References: core's T5 runner in this process for the
text llama.cpp writes, the numpy forward pass of the checkpoint for the sentiment.
"""

from __future__ import annotations

from pathlib import Path

import minilm_gguf
import numpy as np
import numpy_reference as ref
import pytest
import tiny_gguf
from gui_helpers import wait_until_idle
from model_cache import MODEL_CACHE
from PySide6.QtCore import Qt

from slmchat.core.generation import FinishReason, Role
from slmchat.core.tasks.bert_convert import convert_bert
from slmchat.core.tasks.capabilities import Seq2SeqKind
from slmchat.core.tasks.t5 import Seq2SeqTask

TEXT = "the house is small"


@pytest.fixture(scope="module")
def t5_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gguf.write_t5(tmp_path_factory.mktemp("gui-task-models") / "t5.gguf")


def _add_to_library(window, path: Path) -> str:
    model = window.library.import_file(path, copy=False)
    window.refresh_models()
    return model.id


def test_a_t5_model_offers_the_task_picker_and_its_result_is_stored_as_the_reply(qtbot, make_window, t5_path):
    with Seq2SeqTask(t5_path, n_threads=1) as local:
        expected = local.run(Seq2SeqKind.SUMMARIZE, TEXT, max_tokens=6)
        in_french = local.run(Seq2SeqKind.TRANSLATE, TEXT, max_tokens=6, source="English", target="French")
    window = make_window(max_tokens=6)
    window.pages.setCurrentIndex(0)
    assert not window.composer.task_picker.isVisible()  # no T5 chosen: a chat box

    t5_id = _add_to_library(window, t5_path)
    window.switch_model(t5_id)
    assert window.composer.task_picker.isVisible()
    assert [window.composer.task_picker.itemText(i) for i in range(window.composer.task_picker.count())] == [
        "Translate to German", "Translate to French", "Translate to Romanian", "Summarize"]
    window.composer.task_picker.setCurrentText("Summarize")
    qtbot.keyClicks(window.composer.editor, TEXT)
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    wait_until_idle(qtbot, window)

    stored = window.controller.store.branch(window.controller.conversation_id)
    assert [(m.role, m.content) for m in stored] == [(Role.USER, TEXT), (Role.ASSISTANT, expected.text)]
    assert stored[1].reason is FinishReason.LENGTH and stored[1].completion_tokens == expected.generated
    assert window.controller.chat_model.messages()[-1].text == expected.text

    # Regenerate runs the chosen task again on the same text, beside the first result
    window.composer.task_picker.setCurrentText("Translate to French")
    window.chat_view.trigger(1, "act:regenerate")
    wait_until_idle(qtbot, window)
    reply = window.controller.chat_model.messages()[-1]
    assert (reply.text, reply.sibling_index, reply.sibling_count) == (in_french.text, 1, 2)


# --- sentiment ---------------------------------------------------------------------------------
REVIEW = "i love this movie"


@pytest.fixture
def classifier(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """A tiny DistilBERT SST-2 GGUF and, from its checkpoint in numpy, the scores of REVIEW."""
    checkpoint = tiny_gguf.write_hf_distilbert_classifier(tmp_path / "sst2")
    words = ["[CLS]", *REVIEW.split(), "[SEP]"]
    hidden = ref.encoder_hidden(checkpoint.weights, [tiny_gguf.BERT_VOCAB.index(w) for w in words],
                                n_head=checkpoint.n_head, tanh_gelu=True)
    logits = ref.distilbert_classifier_logits(checkpoint.weights, hidden)
    expected = dict(zip(checkpoint.labels, np.exp(logits) / np.exp(logits).sum()))
    return convert_bert(checkpoint.folder, tmp_path / "classifier.gguf"), expected


def _open_chat_with(window, text: str) -> None:
    conversation = window.controller.store.new_conversation(title="Review")
    window.controller.store.add_user_message(conversation.id, text)
    window.controller.open_conversation(conversation.id)


def test_a_message_menu_offers_sentiment_once_a_classifier_is_in_the_library(qtbot, make_window, classifier):
    path, expected = classifier
    window = make_window()
    _open_chat_with(window, REVIEW)
    assert [a.text() for a in window.chat_view.message_menu(0).actions()] == ["Copy"]

    classifier_id = _add_to_library(window, path)
    switcher = window.model_bar.switcher
    assert classifier_id not in [switcher.itemData(i) for i in range(switcher.count())]  # nothing to chat with
    menu = window.chat_view.message_menu(0)
    assert [a.text() for a in menu.actions()] == ["Copy", "Sentiment"]
    menu.actions()[1].trigger()
    qtbot.waitUntil(lambda: window.toast.label.text().startswith("Sentiment:"), timeout=60_000)

    label = max(expected, key=expected.get)
    assert window.toast.label.text() == f"Sentiment: {label.capitalize()} ({expected[label]:.0%} sure)"


# --- search by meaning ----------------------------------------------------------------------------
def _sidebar_conversations(window) -> list[int]:
    items = (window.sidebar.list.item(row) for row in range(window.sidebar.list.count()))
    return [item.data(Qt.ItemDataRole.UserRole + 1) for item in items]


def test_search_by_meaning_ranks_a_paraphrase_first_and_full_text_stays_the_default(qtbot, make_window):
    window = make_window()
    window.pages.setCurrentIndex(0)  # past the welcome
    store = window.controller.store
    ids = {}
    for title, text in [("Baking", "How do I bake bread at home?"),
                        ("Markets", "The stock market fell sharply today."),
                        ("Pets", "My cat sleeps on the sofa all afternoon.")]:
        ids[title] = store.new_conversation(title=title).id
        store.add_user_message(ids[title], text)
    assert not window.sidebar.meaning_toggle.isVisibleTo(window)  # no embedding model: full-text only

    _add_to_library(window, minilm_gguf.cached_gguf(MODEL_CACHE))
    assert window.sidebar.meaning_toggle.isVisibleTo(window) and not window.sidebar.by_meaning()
    qtbot.waitUntil(lambda: not window.controller.meaning.indexing, timeout=60_000)  # back-filled in the background
    assert store.db.execute("SELECT count(*), min(dim) FROM embeddings").fetchone() == (3, 384)

    window.sidebar.search_box.setText("a recipe for homemade loaves")
    qtbot.waitUntil(lambda: window.sidebar.empty_label.isVisibleTo(window), timeout=10_000)
    assert _sidebar_conversations(window) == []  # full text: none of these words was written

    window.sidebar.meaning_toggle.setChecked(True)
    qtbot.waitUntil(lambda: window.sidebar.list.count() == 3, timeout=60_000)
    assert _sidebar_conversations(window)[0] == ids["Baking"]
