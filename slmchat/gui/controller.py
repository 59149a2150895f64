"""Relays between the chat widgets and core: the store, the loaded engine and the worker.

Every write to the store happens here, on the GUI thread: the user's message is committed
before generation starts (all of it or nothing: when the database refuses, `send` says why and
returns False, and the composer keeps the text), the growing reply is checkpointed about once a
second (core's `Checkpointer`), and its end is stored with llama.cpp's figures. The engine runs on the
`GenerationWorker`'s thread, lent to it by the `ModelSession` until the generation is over (so a
model switch never closes a pipe the worker reads); each generation has a request id, so pieces of a reply the user
has moved away from are dropped, never shown in the wrong place. Translate / Summarize (a T5
model) and Sentiment run on the task models' own thread (`TaskModels`) and land here the same way.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import QObject, Signal

from slmchat.core.errors import EngineCrashed, EngineHung, StoreError
from slmchat.core.generation import (
    ChatMessage,
    FinishReason,
    GenerationSettings,
    GenerationStats,
    Role,
    SplitReply,
    ThinkingMarkers,
    join_reply,
)
from slmchat.core.models.library import LibraryModel
from slmchat.core.store.recording import Checkpointer, history_for_engine, session_key
from slmchat.core.store.records import Conversation, Message, MessageStatus
from slmchat.core.store.store import Store
from slmchat.core.tasks.capabilities import Capability, Classification, Seq2SeqResult
from slmchat.gui.chat_view import ChatModel, MessageView, SourceView
from slmchat.gui.composer import ThinkingChoice
from slmchat.gui.documents import DocumentLibrary
from slmchat.core.documents.service import answer_from_documents
from slmchat.gui.model_session import ModelSession
from slmchat.gui.notices import user_message
from slmchat.gui.semantic_index import SemanticIndex
from slmchat.gui.sidebar import HIGHLIGHT
from slmchat.gui.task_models import TaskModels
from slmchat.gui.workers import GenerationWorker, run_task

log = logging.getLogger(__name__)

SEARCH_LIMIT = 50
TRY_SEND_AGAIN = "Your message is still in the box: press Send to try again."
TRY_AGAIN = "Try again in a moment."

_T = TypeVar("_T")


def message_views(branch: list[Message], tree: list[Message]) -> list[MessageView]:
    """The shown branch as rows, each knowing its place among its siblings (‹ 2/3 ›)."""
    siblings: dict[int | None, list[int]] = defaultdict(list)
    for message in tree:
        siblings[message.parent_id].append(message.id)
    return [view_of(message, siblings[message.parent_id]) for message in branch if message.role is not Role.SYSTEM]


def view_of(message: Message, sibling_ids: list[int]) -> MessageView:
    reason = message.reason.value if message.reason else ""
    if not reason and message.status is MessageStatus.INTERRUPTED:
        reason = FinishReason.INTERRUPTED.value
    return MessageView(
        id=message.id,
        role=message.role.value,
        text=message.content,
        model=message.model,
        streaming=message.status is MessageStatus.STREAMING,
        finish_reason=reason,
        ttft_s=message.ttft,
        tokens_per_s=message.tokens_per_s,
        sibling_index=sibling_ids.index(message.id) if message.id in sibling_ids else 0,
        sibling_count=max(1, len(sibling_ids)),
        error=message.error,
        thinking=message.thinking,
        thinking_seconds=message.thinking_seconds,
        sources=tuple(SourceView.of(n, source) for n, source in enumerate(message.sources, 1)),
    )


def attachment_key(conversation_id: int) -> str:
    """The settings key under which a chat's attached document collections are kept."""
    return f"documents.chat.{conversation_id}"


@dataclass
class _Active:
    """The generation in flight."""

    request_id: int
    cancel: threading.Event
    begin: Callable[[Any, threading.Event], Any]  # starts the engine's generation (on the worker)
    on_piece: Callable[[str], None]
    on_done: Callable[[GenerationStats | None], None]
    on_error: Callable[[Exception], None]
    engine: Any = None  # lent by the session once launched, given back when the worker is done


class ChatController(QObject):
    """The chat's behaviour; widgets call its methods and listen to its signals."""

    busy_changed = Signal(bool)
    conversations_changed = Signal()
    conversation_opened = Signal(object)  # Conversation or None (a new, empty chat)
    error = Signal(str)
    notice = Signal(str)
    context_usage = Signal(int, int)  # tokens used, context size
    search_results = Signal(str, list)  # query, list[SearchHit]
    completion_text = Signal(str)  # pieces of a "Continue my text" run
    completion_finished = Signal()
    sentiment = Signal(str)  # a message's sentiment, said for people
    # What the thinking controls show: a `ThinkingChoice`, or None when the model does not think.
    thinking_options = Signal(object)
    # What the Documents button offers: [(collection id, name)], and the ids attached to this chat.
    documents_offer = Signal(list, list)

    def __init__(
        self,
        store: Store,
        session: ModelSession,
        chat_model: ChatModel,
        default_settings: GenerationSettings,
        tasks: TaskModels,
        default_system_prompt: str = "",
        log_file: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.session = session
        self.chat_model = chat_model
        self.default_settings = default_settings
        self.default_system_prompt = default_system_prompt
        self.log_file = log_file
        self.conversation_id: int | None = None
        self.tasks = tasks
        self.task_model: LibraryModel | None = None  # a T5 answers instead of the chat engine
        self._task_cancel: threading.Event | None = None  # the text task in flight
        self.meaning = SemanticIndex(store, tasks, self)
        self.documents = DocumentLibrary(tasks.paths, tasks, self)
        self.documents.collections_changed.connect(lambda _collections: self.offer_documents())
        self.documents.failed.connect(self.error)
        self._new_chat_documents: list[int] = []  # attached before a new chat's first message
        self.documents.start()  # lists the collections; carries on indexing a closed window left
        self.worker = GenerationWorker()
        self.worker.pieces.connect(self._on_pieces)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self._request_id = 0
        self._active: _Active | None = None
        self._waiting_for_model: _Active | None = None  # asked for while the model loads
        self._new_chat_settings: GenerationSettings | None = None  # chosen before a new chat's first message
        session.loaded.connect(self._model_ready)
        session.failed.connect(self._model_failed)

    @property
    def busy(self) -> bool:
        return (self._active is not None or self._waiting_for_model is not None
                or self._task_cancel is not None)

    def shut_down(self) -> None:
        self.stop()
        self.worker.shut_down()
        self.documents.close()

    # --- conversations -------------------------------------------------------------------
    def conversations(self) -> list[Conversation]:
        return self.store.conversations()

    def new_chat(self) -> None:
        self.stop()
        self.conversation_id = None
        self._new_chat_settings = None
        self._new_chat_documents = []
        self.chat_model.set_messages([])
        self.context_usage.emit(0, self._context_size())
        self.conversation_opened.emit(None)
        self.offer_thinking()
        self.offer_documents()

    def open_conversation(self, conversation_id: int, message_id: int | None = None) -> None:
        """Show a conversation; a search hit's message brings its branch into view."""
        if conversation_id == self.conversation_id and message_id is None:
            return
        self.stop()
        try:  # a reply whose writer (say a CLI chat) died since shows as interrupted
            self.store.mark_abandoned_replies()
        except StoreError as error:  # busy: the conversation opens all the same, and the next opening retries
            log.info("could not mark abandoned replies: %s", error)
        if message_id is not None:
            self.store.select(message_id)
        self.conversation_id = conversation_id
        self._new_chat_settings = None
        self._show()
        self.conversation_opened.emit(self.store.conversation(conversation_id))
        self.offer_thinking()
        self.offer_documents()

    def rename(self, conversation_id: int, title: str) -> None:
        self.store.update_conversation(conversation_id, title=title.strip())
        self.conversations_changed.emit()

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        self.store.update_conversation(conversation_id, pinned=pinned)
        self.conversations_changed.emit()

    def trash(self, conversation_id: int) -> Conversation:
        """Move to the trash (undo with `restore`); the open chat closes if it was this one."""
        conversation = self.store.conversation(conversation_id)
        if conversation_id == self.conversation_id:
            self.new_chat()
        self.store.trash(conversation_id)
        self.conversations_changed.emit()
        return conversation

    def restore(self, conversation_id: int) -> None:
        self.store.restore(conversation_id)
        self.conversations_changed.emit()

    def set_conversation_model(self, model_id: str) -> None:
        """Switching model keeps the conversation: the next reply comes from the new model."""
        if self.conversation_id is not None:
            self.store.update_conversation(self.conversation_id, model=model_id)

    def update_conversation_settings(self, system_prompt: str, settings: GenerationSettings) -> None:
        if self.conversation_id is not None:
            self.store.update_conversation(self.conversation_id, system_prompt=system_prompt, settings=settings)
            self.offer_thinking()

    # --- thinking ------------------------------------------------------------------------
    def set_thinking(self, mode: str, budget: int) -> None:
        """This chat's thinking: "auto", "on" or "off", and at most `budget` tokens of it (0: no
        limit). Kept with the conversation's settings, or, before a new chat's first message, with
        the settings it will be created with."""
        settings = dataclasses.replace(self._settings(), thinking=mode, thinking_budget=budget)
        if self.conversation_id is None:
            self._new_chat_settings = settings
            return
        try:
            self.store.update_conversation(self.conversation_id, settings=settings)
        except StoreError as error:  # busy or full: the controls go back to what is stored
            self.error.emit(f"{user_message(error, self.log_file)} {TRY_AGAIN}")
            self.offer_thinking()

    def offer_thinking(self) -> None:
        """Tell the thinking controls this chat's choice, or None to hide them (the model does
        not think, or a text-task model answers: call this after changing `task_model`)."""
        if self._markers() is None or self.task_model is not None:
            self.thinking_options.emit(None)
            return
        settings = self._settings()
        switchable = self.session.info is not None and self.session.info.thinking_switch
        self.thinking_options.emit(ThinkingChoice(settings.thinking, settings.thinking_budget, switchable))

    # --- documents -----------------------------------------------------------------------
    def attached_documents(self) -> list[int]:
        """The ids of the document collections this chat answers from. One removed since finds
        nothing, and the chat answers as usual; the Documents button shows only those there are."""
        if self.conversation_id is None:
            return list(self._new_chat_documents)
        stored = self.store.read_settings().get(attachment_key(self.conversation_id))
        if not isinstance(stored, dict) or stored.get("created") != self._created():
            return []  # none, or left by a deleted conversation whose number was used again
        ids = stored.get("collections")
        return [i for i in ids if isinstance(i, int)] if isinstance(ids, list) else []

    def attach_documents(self, collection_ids: list[int]) -> None:
        """Answer this chat from these collections (none: chat as usual). Kept with the app's
        settings under the conversation's id, or, before a new chat's first message, until it
        is created."""
        if self.conversation_id is None:
            self._new_chat_documents = list(collection_ids)
            return
        try:
            self.store.write_settings({attachment_key(self.conversation_id): {
                "created": self._created(), "collections": list(collection_ids)}})
        except StoreError as error:  # busy or full: the button goes back to what is stored
            self.error.emit(f"{user_message(error, self.log_file)} {TRY_AGAIN}")
            self.offer_documents()

    def _created(self) -> str:
        """When the open conversation was made: with its number, what names it for good."""
        assert self.conversation_id is not None
        return self.store.conversation(self.conversation_id).created.isoformat()

    def offer_documents(self) -> None:
        """Tell the Documents button the collections there are and which this chat uses."""
        offered = [(collection["id"], collection["name"]) for collection in self.documents.collections]
        self.documents_offer.emit(offered, self.attached_documents())

    # --- search (on a worker, with its own read-only connection) ---------------------------
    def search(self, text: str, by_meaning: bool = False) -> None:
        """Full-text search, or by meaning (cosine over the embedding model's vectors)."""
        if not text:
            self.search_results.emit(text, [])
            return
        if by_meaning and self.meaning.available:
            self.meaning.search(text, SEARCH_LIMIT, lambda hits: self.search_results.emit(text, hits),
                                lambda error: self.error.emit(user_message(error, self.log_file)))
            return
        reader = self.store.reader()

        def work() -> list:
            try:
                return reader.search(text, limit=SEARCH_LIMIT, marks=HIGHLIGHT)
            finally:
                reader.close()

        run_task(work, lambda hits: self.search_results.emit(text, hits),
                 lambda error: self.error.emit(user_message(error, self.log_file)))

    # --- sentiment -----------------------------------------------------------------------
    def classify(self, text: str) -> None:
        """The sentiment of `text` from the library's classifier, said through `sentiment`."""
        model = self.tasks.capable(Capability.CLASSIFY)
        if model is None or not text.strip():
            return

        def said(verdict: Classification) -> None:
            score = verdict.scores[verdict.label]
            self.sentiment.emit(f"Sentiment: {verdict.label.capitalize()} ({score:.0%} sure)")

        self.tasks.call(Capability.CLASSIFY, model, lambda client: client.classify([text])[0], said,
                        lambda error: self.error.emit(user_message(error, self.log_file)))

    # --- chatting ------------------------------------------------------------------------
    def send(self, text: str) -> bool:
        """Commit the user's message (with its empty reply), then start the reply.

        True once the message is stored: the composer may let go of it. False when it was not
        (no model to answer, the database busy or failing): a notice says why, and the text
        must stay where the user typed it. While the model loads, the message is stored and
        waits for it.
        """
        if self.busy or not self._model_available():
            return False
        model = self.session.request.model_id if self.session.request else ""
        turn = self._commit_turn(text, model, self.default_system_prompt, self._model_name())
        if turn is None:
            return False
        user, reply = turn
        self._reply(reply, history_for_engine(self.store, user.conversation_id, up_to=user.id))
        return True

    def edit_and_resend(self, message_id: int, text: str) -> bool:
        """A new version of a user message beside the old one, and a reply to it; True once stored."""
        if self.busy or not self._model_available() or self.conversation_id is None:
            return False
        conversation_id = self.conversation_id
        turn = self._commit(lambda: (self.store.edit_message(message_id, text),
                                     self.store.start_reply(conversation_id, model=self._model_name())),
                            TRY_SEND_AGAIN)
        if turn is None:
            return False
        user, reply = turn
        self._reply(reply, history_for_engine(self.store, conversation_id, up_to=user.id))
        return True

    def regenerate(self, message_id: int) -> None:
        """Another reply beside this one; the old one stays reachable with the arrows."""
        if self.busy or not self._model_available() or self.conversation_id is None:
            return
        original = self.store.message(message_id)
        reply = self._commit(lambda: self.store.regenerate(message_id, model=self._model_name()), TRY_AGAIN)
        if reply is not None:
            self._reply(reply, history_for_engine(self.store, self.conversation_id, up_to=original.parent_id))

    def continue_reply(self, message_id: int) -> None:
        """Carry on a stopped reply: a new version that starts with the old text.

        The history ends with the unfinished assistant turn, which the engine continues: from a
        thinking model, its thinking and answer joined back into the raw text the model wrote
        (a reply stopped before any answer thinks on).
        """
        if self.busy or not self._model_available() or self.conversation_id is None:
            return
        original = self.store.message(message_id)
        history = history_for_engine(self.store, self.conversation_id, up_to=original.parent_id)
        still_thinking = bool(original.thinking) and not original.content
        raw = join_reply(SplitReply(original.thinking, original.content, still_thinking), self._markers())
        history.append(ChatMessage(Role.ASSISTANT, raw))
        reply = self._commit(lambda: self.store.regenerate(message_id, model=self._model_name()), TRY_AGAIN)
        if reply is not None:
            self._reply(reply, history, prefix=raw)

    def switch_branch(self, message_id: int, step: int) -> None:
        if self.busy or self.conversation_id is None:
            return
        siblings = self.store.siblings(message_id)
        ids = [sibling.id for sibling in siblings]
        target = ids[(ids.index(message_id) + step) % len(ids)]
        self.store.select(target)
        self._show()

    def stop(self) -> None:
        """Stop the reply: the engine sees the flag within one token."""
        waiting, self._waiting_for_model = self._waiting_for_model, None
        if waiting is not None:  # it never started: end it as stopped, keeping the database right
            waiting.on_done(GenerationStats(finish_reason=FinishReason.STOPPED))
            self.busy_changed.emit(False)
        if self._task_cancel is not None:
            self._task_cancel.set()  # the task ends at its next token, with the text so far
        if self._active is not None:
            self._active.cancel.set()  # the engine client passes it on to its process

    def run_text_task(self, text: str, kind: str, target: str = "") -> bool:
        """Translate or summarize `text` with the T5 model; stored as a question and its reply.
        True once stored (as `send`)."""
        model = self.task_model
        if self.busy or model is None:
            return False
        turn = self._commit_turn(text, model.id, "", model.path.stem)
        if turn is None:
            return False
        self._text_task(model, turn[1], text, kind, target)
        return True

    def rerun_text_task(self, message_id: int, kind: str, target: str = "") -> None:
        """Regenerate for a text task: the task again on the same text, beside the old result."""
        model = self.task_model
        if self.busy or model is None or self.conversation_id is None:
            return
        original = self.store.message(message_id)
        question = self.store.message(original.parent_id).content if original.parent_id else ""
        self._text_task(model, self.store.regenerate(message_id, model=model.path.stem), question, kind, target)

    def _text_task(self, model: LibraryModel, reply: Message, text: str, kind: str, target: str) -> None:
        """Run the T5 task on the task thread and store its result as `reply`."""
        self._show()
        self.conversations_changed.emit()
        row = self.chat_model.rowCount() - 1
        checkpointer = Checkpointer(self.store, reply.id)
        cancel = self._task_cancel = threading.Event()
        max_tokens = self._settings().max_tokens
        languages = {"target": target} if target else {}  # Summarize has none
        self.busy_changed.emit(True)

        def use(client: Any) -> Seq2SeqResult:
            return client.run(kind, text, max_tokens=max_tokens, cancel=cancel, **languages)

        def done(result: Seq2SeqResult) -> None:
            checkpointer.append(result.text)
            self._end_text_task(row, checkpointer, GenerationStats(
                finish_reason=result.finish_reason, prompt_tokens=result.prompt_tokens,
                completion_tokens=result.generated))

        def failed(error: Exception) -> None:
            said = user_message(error, self.log_file)
            self._end_text_task(row, checkpointer, GenerationStats(finish_reason=FinishReason.ERROR, error=said))
            self.error.emit(said)

        capability = Capability.TRANSLATE if kind == "translate" else Capability.SUMMARIZE
        self.tasks.call(capability, model, use, done, failed)

    def _commit_turn(self, text: str, model_id: str, system_prompt: str,
                     model_name: str) -> tuple[Message, Message] | None:
        """Store what the user typed and an empty streaming reply, in the open conversation or a
        new one (then opened), all in one transaction; None (and a notice) when refused."""
        conversation_id = self.conversation_id

        def write() -> tuple[Message, Message]:
            target = conversation_id
            if target is None:
                target = self.store.new_conversation(model=model_id, system_prompt=system_prompt,
                                                     settings=self._new_chat_settings).id
            return self.store.add_user_message(target, text), self.store.start_reply(target, model=model_name)

        turn = self._commit(write, TRY_SEND_AGAIN)
        if turn is not None and conversation_id is None:
            self.conversation_id = turn[0].conversation_id
            self._new_chat_settings = None
            if self._new_chat_documents:
                self.attach_documents(self._new_chat_documents)
                self._new_chat_documents = []
            self.conversation_opened.emit(self.store.conversation(self.conversation_id))
        return turn

    def _commit(self, write: Callable[[], _T], what_now: str) -> _T | None:
        """Run `write` as one transaction, so a refusal leaves nothing half-written; when the
        database refuses (core's `StoreError`: busy past its timeout, disk full), say why and
        `what_now`. Anything else is a bug: logged, and still never costs the user's text."""
        try:
            with self.store.transaction():
                return write()
        except Exception as error:
            self.error.emit(f"{user_message(error, self.log_file)} {what_now}")
            return None

    def _end_text_task(self, row: int, checkpointer: Checkpointer, stats: GenerationStats) -> None:
        self._task_cancel = None
        self._finish_reply(row, checkpointer, stats)
        self.busy_changed.emit(False)

    def complete(self, text: str) -> None:
        """"Continue my text" with a model that has no chat format; nothing is stored."""
        if self.busy or not self._model_available():
            return
        settings = self.default_settings

        def start(engine: Any, cancel: threading.Event) -> Any:
            return engine.complete(text, settings, cancel)

        self._start(start, self.completion_text.emit, lambda _stats: self.completion_finished.emit(),
                    self._completion_failed)

    # --- internals -----------------------------------------------------------------------
    def _show(self) -> None:
        assert self.conversation_id is not None
        branch = self.store.branch(self.conversation_id)
        tree = self.store.messages(self.conversation_id)
        self.chat_model.set_messages(message_views(branch, tree))
        self._report_context_usage(branch)

    def _report_context_usage(self, branch: list[Message]) -> None:
        """How full the context was after the last reply of the shown branch."""
        last = next((m for m in reversed(branch) if m.role is Role.ASSISTANT and m.prompt_tokens), None)
        used = (last.prompt_tokens or 0) + (last.completion_tokens or 0) if last else 0
        self.context_usage.emit(used, self._context_size())

    def _context_size(self) -> int:
        """0 hides the gauge: a text task (T5) keeps no conversation in the model's memory."""
        if self.task_model is not None or self.session.info is None:
            return 0
        return self.session.info.n_ctx

    def _model_name(self) -> str:
        """The name the user knows the model by (the switcher's), stored with each reply."""
        return self.session.request.name if self.session.request else ""

    def _markers(self) -> ThinkingMarkers | None:
        """How the loaded model marks its thinking (None: it does not think, or none is loaded)."""
        return self.session.info.thinking if self.session.info is not None else None

    def _model_available(self) -> bool:
        if self.session.engine is not None or self.session.is_loading:
            return True
        if self.session.request is not None:  # it crashed or failed earlier: try again
            self.session.reload()
            return True
        self.error.emit("Choose a model first: open Models to download or import one. "
                        "Your message stays in the box until then.")
        return False

    def _settings(self) -> GenerationSettings:
        if self.conversation_id is None:
            return self._new_chat_settings or self.default_settings
        return self.store.conversation(self.conversation_id).settings or self.default_settings

    def _reply(self, reply: Message, history: list[ChatMessage], prefix: str = "") -> None:
        """Show the (empty) reply row and stream into it, checkpointing as it grows."""
        self._show()
        self.conversations_changed.emit()
        row = self.chat_model.rowCount() - 1
        checkpointer = Checkpointer(self.store, reply.id, markers=self._markers())
        if prefix:
            checkpointer.append(prefix)
            self._show_growing(row, checkpointer)
        settings = self._settings()

        def on_piece(text: str) -> None:
            if self._active is not None and self._active.engine is not None:
                checkpointer.markers = self._active.engine.info.thinking  # the model answering
            checkpointer.append(text)
            if self._shows(row, reply.id):
                self._show_growing(row, checkpointer)

        documents = [] if prefix else self.attached_documents()  # a continued reply goes on as it began
        found: dict[str, Any] = {}  # the sources the worker retrieved, stored with the reply

        def keep_sources() -> None:
            if found.get("sources"):
                try:
                    self.store.set_sources(reply.id, found["sources"])
                except StoreError as error:  # the reply is kept all the same
                    self.error.emit(user_message(error, self.log_file))

        def on_done(stats: GenerationStats | None) -> None:
            keep_sources()
            self._finish_reply(row, checkpointer, stats or GenerationStats())

        def on_error(error: Exception) -> None:
            keep_sources()
            crashed = isinstance(error, (EngineCrashed, EngineHung))
            reason = FinishReason.INTERRUPTED if crashed else FinishReason.ERROR
            text = user_message(error, self.log_file)
            self._finish_reply(row, checkpointer, GenerationStats(finish_reason=reason, error=text))
            if crashed:
                text += " The model will start again when you send your next message."
            self.error.emit(text)

        session = session_key(reply.conversation_id)  # the engine keeps this chat's KV state on disk

        def start(engine: Any, cancel: threading.Event) -> Any:
            if documents and history and history[-1].role is Role.USER:
                answering = answer_from_documents(self.documents.service, engine, history[-1].content, documents,
                                                  settings, cancel, found)
                if answering is not None:
                    return answering
            return engine.stream_chat(history, settings, cancel, session=session)

        self._start(start, on_piece, on_done, on_error)

    def _show_growing(self, row: int, checkpointer: Checkpointer) -> None:
        """The streaming row shows the reply so far: its answer, and its thinking apart."""
        split = checkpointer.split
        self.chat_model.update(row, text=split.answer, thinking=split.thinking, thinking_open=split.thinking_open,
                               thinking_seconds=checkpointer.thinking_seconds)

    def _finish_reply(self, row: int, checkpointer: Checkpointer, stats: GenerationStats) -> None:
        message = checkpointer.finish(stats)
        if self._shows(row, message.id):
            current = self.chat_model.message(row)
            view = view_of(message, [])
            self.chat_model.update(
                row, text=message.content, streaming=False, finish_reason=view.finish_reason,
                ttft_s=view.ttft_s, tokens_per_s=view.tokens_per_s, error=view.error,
                sibling_index=current.sibling_index, sibling_count=current.sibling_count,
                thinking=message.thinking, thinking_open=False, thinking_seconds=message.thinking_seconds,
                sources=view.sources,
            )
        if stats.prompt_tokens:
            self.context_usage.emit(stats.prompt_tokens + stats.completion_tokens, self._context_size())
        self.meaning.update()
        if stats.dropped_messages:
            self.notice.emit(
                f"The conversation is longer than the model can hold, so its {stats.dropped_messages} "
                "oldest messages were left out of this reply."
            )
        self.conversations_changed.emit()

    def _shows(self, row: int, message_id: int) -> bool:
        """Is this reply still on screen at `row` (the user may have opened another chat)?"""
        return row < self.chat_model.rowCount() and self.chat_model.message(row).id == message_id

    def _completion_failed(self, error: Exception) -> None:
        self.error.emit(user_message(error, self.log_file))
        self.completion_finished.emit()

    def _start(self, begin: Callable[[Any, threading.Event], Any], on_piece: Callable[[str], None],
               on_done: Callable[[GenerationStats | None], None], on_error: Callable[[Exception], None]) -> None:
        """Run a generation now, or as soon as the model has loaded."""
        self._request_id += 1
        active = _Active(self._request_id, threading.Event(), begin, on_piece, on_done, on_error)
        self.busy_changed.emit(True)
        if self.session.engine is not None:
            self._launch(active)
        else:
            self._waiting_for_model = active

    def _launch(self, active: _Active) -> None:
        """Start on the worker with the engine loaded now, lent until the worker is done."""
        self._waiting_for_model = None
        self._active = active
        engine = active.engine = self.session.lend()
        self.worker.start(active.request_id, lambda: active.begin(engine, active.cancel))

    def _model_ready(self, _info: object) -> None:
        branch = self.store.branch(self.conversation_id) if self.conversation_id is not None else []
        self._report_context_usage(branch)
        self.offer_thinking()
        if self._waiting_for_model is not None:
            self._launch(self._waiting_for_model)

    def _model_failed(self, _model_id: str, error: Exception) -> None:
        waiting, self._waiting_for_model = self._waiting_for_model, None
        if waiting is not None:
            waiting.on_error(error)
            self.busy_changed.emit(False)

    def _on_pieces(self, request_id: int, text: str) -> None:
        if self._active is not None and request_id == self._active.request_id:
            self._active.on_piece(text)

    def _on_finished(self, request_id: int, stats: GenerationStats | None) -> None:
        active = self._end(request_id)
        if active is not None:
            active.on_done(stats)
            self.busy_changed.emit(False)

    def _on_failed(self, request_id: int, error: Exception) -> None:
        active = self._end(request_id)
        if active is not None:
            if isinstance(error, (EngineCrashed, EngineHung)):  # its process is gone: the next send reloads
                self.session.forget_engine(active.engine)
            active.on_error(error)
            self.busy_changed.emit(False)

    def _end(self, request_id: int) -> _Active | None:
        """The worker is done with request `request_id`: its engine goes back to the session."""
        if self._active is None or request_id != self._active.request_id:
            return None
        active, self._active = self._active, None
        self.session.give_back()
        return active
