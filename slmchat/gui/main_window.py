"""The main window: sidebar, model bar, chat, composer — put together and wired to the controller.

It holds no rules of its own: user intent goes to `ChatController` (conversations, replies) or
`ModelSession` (which model answers); their signals come back as widget updates.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import (
    QCloseEvent,
    QDesktopServices,
    QGuiApplication,
    QKeySequence,
    QResizeEvent,
    QShortcut,
)
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QHBoxLayout,
    QInputDialog,
    QMainWindow,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.errors import StoreError
from slmchat.core.generation import EngineConfig, ModelInfo
from slmchat.core.models.catalog import Catalog
from slmchat.core.models.hardware import Backend, Machine
from slmchat.core.models.hub import DownloadProgress
from slmchat.core.models.library import LibraryModel, ModelLibrary
from slmchat.core.tasks.capabilities import Capability
from slmchat.gui import theme as themes
from slmchat.gui.api_badge import other_app_badge
from slmchat.gui.api_server import ApiServer
from slmchat.gui.chat_view import Action, ChatView
from slmchat.gui.completion_pad import CompletionPad
from slmchat.gui.composer import Composer
from slmchat.gui.controller import ChatController
from slmchat.gui.documents_wiring import connect_documents
from slmchat.gui.downloads import DownloadKey, Downloads, describe_progress
from slmchat.gui.empty_state import EmptyState
from slmchat.gui.model_bar import ModelBar
from slmchat.gui.model_choices import display_name, model_choices, recommendation
from slmchat.gui.model_servers import ModelServers, servers_from_settings
from slmchat.gui.model_session import LoadRequest, ModelSession
from slmchat.gui.notices import NoticeBar, Toast, user_message
from slmchat.gui.sidebar import Sidebar
from slmchat.gui.task_models import roles
from slmchat.gui.theme import Theme
from slmchat.gui.trash import Trash, TrashDialog
from slmchat.gui.welcome import Recommendation, Welcome
from slmchat.gui.workers import run_task
from slmchat.paths import Paths
from slmchat.settings import Settings, save_settings

if TYPE_CHECKING:  # imported when first opened: start-up stays quick
    from slmchat.gui.model_manager import ModelManager
    from slmchat.gui.model_server_dialog import ModelServerDialog
    from slmchat.gui.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)

COMPOSER_MAX_WIDTH = 800
# Roles a model answers the composer with; embedding and classifier models serve search and
# Sentiment instead, so the switcher does not list them.
ANSWERS = frozenset({Capability.CHAT, Capability.COMPLETE, Capability.TRANSLATE})


class MainWindow(QMainWindow):
    """Shows the welcome on first run, else the chat."""

    def __init__(
        self,
        controller: ChatController,
        session: ModelSession,
        library: ModelLibrary,
        paths: Paths,
        settings: Settings,
        catalog: Catalog | None,
        theme: Theme,
        first_run: bool,
    ) -> None:
        super().__init__()
        self.controller = controller
        self.session = session
        self.library = library
        self.paths = paths
        self.settings = settings
        self.catalog = catalog
        self.theme = theme
        self.machine: Machine | None = None
        self._recommended: tuple[DownloadKey, Recommendation] | None = None
        self.downloads = Downloads(library, paths, self)
        self.model_servers = ModelServers(servers_from_settings(settings.model_servers), self)
        self._servers_dialog: ModelServerDialog | None = None  # one, kept: a server it is asking may answer late
        self.api_server = ApiServer(session, controller.store, paths.log_file, self)
        self.trash = Trash(controller.store, session,  # it rewrites the file when the GUI is not writing
                           lambda: controller.busy or controller.meaning.indexing, self)
        self.setWindowTitle("slmchat")
        self.resize(1180, 780)
        self.setMinimumSize(760, 520)

        self.sidebar = Sidebar()
        self.model_bar = ModelBar()
        self.notice = NoticeBar()
        self.api_badge = other_app_badge()
        self.chat_view = ChatView(controller.chat_model, theme)
        self.empty_state = EmptyState()
        self.completion_pad = CompletionPad()
        self.composer = Composer()
        self.welcome = Welcome(QGuiApplication.windowIcon())

        self.chat_stack = QStackedWidget()
        for page in (self.empty_state, self.chat_view, self.completion_pad):
            self.chat_stack.addWidget(page)

        chat_area = QWidget()
        chat_area.setObjectName("ChatArea")
        column = QVBoxLayout(chat_area)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.model_bar)
        notice_row = QHBoxLayout()
        notice_row.setContentsMargins(16, 10, 16, 0)
        notice_row.addWidget(self.notice)
        notice_row.addWidget(self.api_badge, 0, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        column.addLayout(notice_row)
        column.addWidget(self.chat_stack, 1)
        composer_row = QHBoxLayout()
        composer_row.setContentsMargins(24, 6, 24, 18)
        composer_row.addStretch(1)
        self.composer.setMaximumWidth(COMPOSER_MAX_WIDTH)
        composer_row.addWidget(self.composer, 100)
        composer_row.addStretch(1)
        column.addLayout(composer_row)

        main = QWidget()
        row = QHBoxLayout(main)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        self.sidebar.setFixedWidth(272)
        row.addWidget(self.sidebar)
        row.addWidget(chat_area, 1)

        self.pages = QStackedWidget()
        self.pages.addWidget(main)
        self.pages.addWidget(self.welcome)
        self.setCentralWidget(self.pages)
        self.toast = Toast(self)
        self.completion_pad.setContentsMargins(24, 0, 24, 16)

        self._connect()
        self._shortcuts()
        self.setTabOrder(self.sidebar.new_button, self.sidebar.search_box)
        self.setTabOrder(self.sidebar.search_box, self.sidebar.list)
        self.setTabOrder(self.sidebar.list, self.model_bar.switcher)
        self.setTabOrder(self.model_bar.switcher, self.composer.editor)
        self.setTabOrder(self.composer.editor, self.composer.send_button)
        self.refresh_conversations()
        self.refresh_models()
        self.model_servers.refresh()
        self._show_chat_page()
        if first_run:
            self.pages.setCurrentWidget(self.welcome)
            self.welcome.start_button.setFocus()
        else:
            self.composer.editor.setFocus()

    # --- wiring --------------------------------------------------------------------------
    def _connect(self) -> None:
        c, s = self.controller, self.session
        self.sidebar.new_chat.connect(self.new_chat)
        self.sidebar.opened.connect(c.open_conversation)
        self.sidebar.search_changed.connect(self._search)
        self.sidebar.rename_requested.connect(self._rename)
        self.sidebar.pin_requested.connect(c.set_pinned)
        self.sidebar.delete_requested.connect(self._delete)
        self.sidebar.trash_requested.connect(self.open_trash)
        self.trash.changed.connect(self.refresh_conversations)
        self.composer.submitted.connect(self._submit)
        self.composer.stop_requested.connect(c.stop)
        self.composer.thinking_changed.connect(c.set_thinking)
        self.completion_pad.continue_requested.connect(c.complete)
        self.completion_pad.stop_requested.connect(c.stop)
        self.empty_state.suggestion_chosen.connect(self._suggest)
        self.chat_view.action.connect(self._message_action)
        self.model_bar.model_chosen.connect(self.switch_model)
        self.model_bar.manage_models.connect(self.open_model_manager)
        self.model_bar.open_settings.connect(self.open_settings)
        self.model_bar.open_about.connect(self.open_about)
        self.model_bar.add_server.connect(self.open_model_servers)
        self.model_servers.changed.connect(self.refresh_models)
        self.model_servers.edited.connect(self._model_servers_edited)
        self.welcome.start_chat.connect(self._start_from_welcome)
        self.welcome.typed.connect(self._typed_on_welcome)
        self.welcome.download.connect(self._download_recommended)
        self.downloads.progress.connect(self._welcome_progress)
        self.downloads.finished.connect(self._downloaded)
        self.downloads.stopped.connect(self._welcome_stopped)

        c.busy_changed.connect(self.composer.set_busy)
        c.busy_changed.connect(self.completion_pad.set_busy)
        c.conversations_changed.connect(self.refresh_conversations)
        c.conversation_opened.connect(self._conversation_opened)
        c.error.connect(lambda text: self.notice.show_message(text, error=True))
        c.notice.connect(self.notice.show_message)
        c.context_usage.connect(self.composer.set_context_usage)
        c.thinking_options.connect(self.composer.show_thinking)
        c.search_results.connect(self._search_results)
        c.completion_text.connect(self.completion_pad.append)
        c.sentiment.connect(self.toast.show_message)
        c.chat_model.rowsInserted.connect(self._show_chat_page)
        c.chat_model.modelReset.connect(self._show_chat_page)

        self.api_server.other_app_using.connect(self.api_badge.setVisible)
        self.api_server.failed.connect(lambda text: self.notice.show_message(text, error=True))
        self.api_server.chat_stored.connect(lambda _conversation: self.refresh_conversations())
        self.api_server.apply(self.settings)

        # The composer's Documents button: collections attached per chat, "Manage documents…" opens the dialog.
        self.open_documents = connect_documents(c, self.composer, self)

        s.loading.connect(self.model_bar.set_loading)
        s.loaded.connect(self._model_loaded)
        s.failed.connect(self._model_failed)

    def _shortcuts(self) -> None:
        bindings = {
            QKeySequence.StandardKey.New: self.new_chat,
            QKeySequence.StandardKey.Find: self._focus_search,
            QKeySequence("Ctrl+K"): self.model_bar.open_switcher,
            QKeySequence(Qt.Key.Key_Escape): self.controller.stop,
        }
        for sequence, slot in bindings.items():
            shortcut = QShortcut(sequence, self)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(slot)

    # --- conversations -------------------------------------------------------------------
    def new_chat(self) -> None:
        self.pages.setCurrentIndex(0)
        self.composer.cancel_edit()
        self.controller.new_chat()
        self.composer.editor.setFocus()

    def refresh_conversations(self) -> None:
        if self.sidebar.search_text():
            return  # the results stay until the search box is cleared
        self.sidebar.set_conversations(self.controller.conversations(), self.controller.conversation_id)

    def _conversation_opened(self, conversation: object) -> None:
        self.composer.cancel_edit()
        self.refresh_conversations()
        self._show_chat_page()

    def _show_chat_page(self) -> None:
        text_task = self.controller.task_model is not None
        if not text_task and self.session.info is not None and not self.session.info.is_chat:
            self.chat_stack.setCurrentWidget(self.completion_pad)
            self.composer.hide()
            return
        self.composer.show()
        empty = self.controller.chat_model.rowCount() == 0
        self.chat_stack.setCurrentWidget(self.empty_state if empty else self.chat_view)

    def _focus_search(self) -> None:
        self.pages.setCurrentIndex(0)
        self.sidebar.search_box.setFocus()
        self.sidebar.search_box.selectAll()

    def _search(self, text: str) -> None:
        if text:
            self.controller.search(text, self.sidebar.by_meaning())
        else:
            self.refresh_conversations()

    def _search_results(self, query: str, hits: list) -> None:
        if query == self.sidebar.search_text():
            self.sidebar.set_search_results(hits)

    def _rename(self, conversation_id: int) -> None:
        current = self.controller.store.conversation(conversation_id).title
        title, ok = QInputDialog.getText(self, "Rename chat", "New name:", text=current)
        if ok and title.strip():
            self.controller.rename(conversation_id, title)

    def _delete(self, conversation_id: int) -> None:
        conversation = self.controller.trash(conversation_id)
        title = conversation.title or "the chat"
        self.toast.show_message(f"Deleted “{title[:40]}”", lambda: self.controller.restore(conversation_id))

    def _submit(self, text: str) -> None:
        """The composer lets go of the text only once it is stored (else a notice says why)."""
        editing = self.composer.editing
        task = self.composer.task()
        if task is not None:
            stored = self.controller.run_text_task(text, *task)
        elif editing is not None:
            stored = self.controller.edit_and_resend(editing, text)
        else:
            stored = self.controller.send(text)
        if stored:
            self.composer.clear()

    def _suggest(self, prompt: str) -> None:
        self.composer.editor.setPlainText(prompt)
        self.composer.editor.setFocus()

    def _message_action(self, row: int, action: str, argument: str) -> None:
        message = self.controller.chat_model.message(row)
        if action == Action.COPY.value:
            QGuiApplication.clipboard().setText(message.text)
            self.toast.show_message("Copied")
        elif action == Action.COPY_CODE.value:
            QGuiApplication.clipboard().setText(argument)
            self.toast.show_message("Code copied")
        elif action == Action.REGENERATE.value:
            task = self.composer.task()
            if task is not None:
                self.controller.rerun_text_task(message.id, *task)
            else:
                self.controller.regenerate(message.id)
        elif action == Action.CONTINUE.value:
            self.controller.continue_reply(message.id)
        elif action == Action.EDIT.value:
            self.composer.begin_edit(message.id, message.text)
        elif action in (Action.PREVIOUS.value, Action.NEXT.value):
            self.controller.switch_branch(message.id, -1 if action == Action.PREVIOUS.value else 1)
        elif action == Action.SENTIMENT.value:
            self.controller.classify(message.text)
        elif action == Action.LINK.value:
            QDesktopServices.openUrl(QUrl(argument))

    # --- models --------------------------------------------------------------------------
    def refresh_models(self) -> None:
        everything = self.library.list()
        self._offer_task_roles(everything)
        models = [m for m in everything if m.info is None or roles(m) & ANSWERS]
        n_ctx = self.settings.context_size
        current = self.session.request.model_id if self.session.request else None
        choices = model_choices(models, self.machine, n_ctx, self.catalog) + self.model_servers.choices()
        self.model_bar.set_models(choices, current)
        starter = next((m for m in models if m.source.value == "starter" and m.usable), None)
        self.welcome.set_starter(display_name(starter, self.catalog) if starter else None)

    def _offer_task_roles(self, models: list[LibraryModel]) -> None:
        """Search by meaning and Sentiment appear once the library has a model for them."""
        tasks = self.controller.tasks
        tasks.refresh(models)
        self.sidebar.set_meaning_available(tasks.capable(Capability.EMBED) is not None)
        self.chat_view.sentiment_available = tasks.capable(Capability.CLASSIFY) is not None
        self.controller.meaning.update()

    def engine_config(self, model: LibraryModel) -> EngineConfig:
        return EngineConfig(
            model_path=model.path,
            n_ctx=self.settings.context_size,
            n_threads=self.settings.n_threads,
            n_gpu_layers=self.settings.gpu_layers,
            overflow=self.settings.overflow,
        )

    def load_default_model(self) -> None:
        """The model chosen in the settings, else the starter, else the first usable one."""
        usable = [m for m in self.library.list() if m.usable]
        wanted = self.settings.default_model
        model = next((m for m in usable if wanted and str(m.path) == wanted), None)
        model = model or next((m for m in usable if m.source.value == "starter"), None)
        model = model or (usable[0] if usable else None)
        if model is not None:
            self.switch_model(model.id)
        else:
            self.model_bar.set_unloaded("No model yet")

    def set_machine(self, machine: Machine) -> None:
        """The hardware facts arrive after start-up (detection runs off the GUI thread)."""
        self.machine = machine
        self.refresh_models()
        self._recommended = recommendation(self.catalog, self.machine, self.library)
        self.welcome.set_recommendation(self._recommended[1] if self._recommended else None)

    def _download_recommended(self) -> None:
        if self._recommended is not None:
            key, rec = self._recommended
            self.downloads.start(key, rec.sha256 or None)
            self.welcome.set_download_progress(0.0, "Starting…")

    def _welcome_progress(self, key: DownloadKey, progress: DownloadProgress) -> None:
        if self._recommended is not None and key == self._recommended[0]:
            self.welcome.set_download_progress(progress.fraction, describe_progress(progress))

    def _welcome_stopped(self, key: DownloadKey, text: str, paused: bool) -> None:
        if self._recommended is not None and key == self._recommended[0]:
            self.welcome.set_download_progress(None, "Paused." if paused else text)

    def _downloaded(self, key: DownloadKey, model: LibraryModel) -> None:
        """A finished download joins the switcher; the welcome's download opens a chat with it."""
        self.refresh_models()
        if self._recommended is not None and key == self._recommended[0]:
            self.welcome.set_download_progress(None, "Downloaded.")
            if self.pages.currentWidget() is self.welcome or self.session.request is None:
                self.pages.setCurrentIndex(0)
                self.switch_model(model.id)
                self.new_chat()

    def open_model_file(self, path: Path) -> None:
        """A .gguf opened with slmchat: add it to the models, used where it is, and chat with it."""
        library = self.library

        def done(model: LibraryModel) -> None:
            self.refresh_models()
            self.switch_model(model.id)

        run_task(lambda: library.import_file(path, copy=False), done,
                 lambda error: self.notice.show_message(user_message(error, self.paths.log_file), error=True))

    def switch_model(self, model_id: str) -> None:
        """Load another model (a file here, or one on an added server); the open conversation
        stays and continues with it."""
        remote = self.model_servers.find(model_id)
        model: LibraryModel | None = None
        if remote is None:
            try:
                model = self.library.get(model_id)
            except Exception as error:
                self.notice.show_message(user_message(error, None), error=True)
                return
            if not model.usable:
                self.notice.show_message(model.problem or "This model file can't be used.", error=True)
                return
        self.controller.stop()
        self.model_bar.select(model_id)
        text_task = model is not None and Capability.TRANSLATE in roles(model)
        self.controller.task_model = model if text_task else None
        self.controller.offer_thinking()
        self.composer.show_tasks(text_task)
        self._show_chat_page()
        if model is not None and text_task:  # started in its own process on first use, by the task models
            self.model_bar.set_ready("CPU", f"{display_name(model, self.catalog)}: translates and summarizes")
            return
        if model is not None:
            request = LoadRequest(model.id, display_name(model, self.catalog), self.engine_config(model))
        else:
            request = LoadRequest(model_id, self.model_servers.name(remote), remote)
        self.session.load(request)
        self.controller.set_conversation_model(model_id)

    def _model_loaded(self, info: ModelInfo) -> None:
        if "server" in info.extra:  # a model on a server the user added
            detail = f"{info.name} runs on the model server at {info.extra['server']}: your messages go there."
        else:
            detail = (f"{info.name}: {info.quantization}, context {info.n_ctx:,} tokens, "
                      f"{info.n_threads} threads, {info.n_gpu_layers} layers on the GPU")
        self.model_bar.set_ready(info.backend, detail)
        self._show_chat_page()
        if self.machine is not None and self.machine.backend is not Backend.CPU and info.backend == "CPU":
            self.notice.show_message(
                "The graphics card could not be used for this model, so it runs on the processor. "
                "Replies will be slower."
            )

    def _model_failed(self, model_id: str, error: Exception) -> None:
        previous = self.session.request
        self.model_bar.select(previous.model_id if previous else None)
        self.model_bar.set_unloaded(f"{previous.name} starts with your next message" if previous else "Not loaded")
        self.notice.show_message(user_message(error, self.controller.log_file), error=True)

    def _start_from_welcome(self) -> None:
        self.pages.setCurrentIndex(0)
        starter = next((m for m in self.library.list() if m.source.value == "starter" and m.usable), None)
        if starter is not None and self.session.request is None:
            self.switch_model(starter.id)
        self.new_chat()

    def _typed_on_welcome(self, text: str) -> None:
        """Typing on the welcome starts chatting, the keystroke kept as the composer's first."""
        self._start_from_welcome()
        self.composer.editor.insertPlainText(text)

    def apply_settings(self, settings: Settings) -> None:
        """Take saved settings into use: theme and text size now, engine options by reloading."""
        def engine_options(chosen: Settings) -> tuple:
            return chosen.context_size, chosen.overflow, chosen.gpu_layers, chosen.n_threads

        engine_changed = engine_options(settings) != engine_options(self.settings)
        self.settings = settings
        self.api_server.apply(settings)
        self.theme = themes.resolve(settings.theme)
        themes.apply(QApplication.instance(), self.theme, settings.font_size)
        self.chat_view.set_theme(self.theme)
        self.chat_view.refresh_layouts()
        if engine_changed and self.session.request is not None:
            self.switch_model(self.session.request.model_id)

    # --- dialogs (imported when first opened: start-up stays quick) ------------------------
    def model_manager(self, catalog: Catalog) -> ModelManager:
        """The model manager over this window's library and downloads, wired back to the window."""
        from slmchat.gui.model_manager import ModelManager, ModelsContext

        context = ModelsContext(self.library, self.downloads, catalog, lambda: self.machine,
                                self.settings.context_size, self.paths.log_file)
        manager = ModelManager(context, self)
        manager.use_model.connect(self.switch_model)
        manager.models_changed.connect(self.refresh_models)
        return manager

    def open_model_manager(self) -> None:
        from slmchat.core.models.catalog import load_catalog

        try:
            catalog = load_catalog()
        except Exception as error:
            self.notice.show_message(user_message(error, self.paths.log_file), error=True)
            return
        self.model_manager(catalog).exec()

    def settings_dialog(self) -> SettingsDialog:
        """The settings dialog for this window's chat; what it saves is applied here."""
        from slmchat.gui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self.paths, self.controller, self)
        dialog.saved.connect(self.apply_settings)
        dialog.restored.connect(lambda _undo: self.refresh_conversations())  # the store reads the restored file
        return dialog

    def open_settings(self) -> None:
        dialog = self.settings_dialog()
        if dialog.exec() == QDialog.DialogCode.Accepted:
            dialog.save()

    def open_model_servers(self) -> None:
        from slmchat.gui.model_server_dialog import ModelServerDialog

        if self._servers_dialog is None:
            self._servers_dialog = ModelServerDialog(self.model_servers, self)
        self._servers_dialog.exec()

    def _model_servers_edited(self) -> None:
        """Keep the servers in the settings; a removed server's model stops answering at once."""
        self.settings = dataclasses.replace(self.settings, model_servers=self.model_servers.for_settings())
        try:
            save_settings(self.controller.store, self.settings)
        except StoreError as error:
            self.notice.show_message(user_message(error, self.paths.log_file), error=True)
        request = self.session.request
        if request is not None and not isinstance(request.config, EngineConfig) \
                and self.model_servers.find(request.model_id) is None:
            self.load_default_model()

    def open_trash(self) -> None:
        TrashDialog(self.trash, self).exec()

    def open_about(self) -> None:
        from slmchat.gui.about import AboutDialog

        build = self.session.info.extra.get("llama_build", "") if self.session.info else ""
        AboutDialog(self, build).exec()

    # --- Qt events -----------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.toast.isVisible():
            self.toast.move((self.width() - self.toast.width()) // 2, self.height() - self.toast.height() - 90)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.api_server.stop()
        self.downloads.cancel_all()
        self.controller.shut_down()
        self.controller.tasks.close()
        if self.trash.purge_pending:  # deleted words must not outlive the app in the file
            self.trash.purge_now()
        self.session.close()
        super().closeEvent(event)
