"""The Documents button of the composer, wired to the controller and the Documents dialog.

Kept apart from `documents.py` because it needs the controller, which itself uses the library.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QWidget

from slmchat.gui.composer import Composer
from slmchat.gui.controller import ChatController
from slmchat.gui.documents import DocumentsDialog


def connect_documents(controller: ChatController, composer: Composer,
                      parent: QWidget) -> Callable[[], DocumentsDialog]:
    """Wire the composer's Documents button to the controller; returns what opens the dialog
    (one dialog, kept, so its list and progress stay while indexing runs). Wiring twice returns
    the first wiring's opener."""
    wired = composer.property("open_documents")
    if wired is not None:
        return wired
    dialogs: list[DocumentsDialog] = []

    def open_dialog() -> DocumentsDialog:
        if not dialogs:
            dialogs.append(DocumentsDialog(controller.documents, parent))
        dialogs[0].show()
        dialogs[0].raise_()
        return dialogs[0]

    composer.documents_chosen.connect(controller.attach_documents)
    composer.manage_documents.connect(open_dialog)
    controller.documents_offer.connect(composer.show_documents)
    controller.offer_documents()
    composer.setProperty("open_documents", open_dialog)
    return open_dialog
