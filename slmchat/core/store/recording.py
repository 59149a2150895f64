"""Recording chat turns in the store while replies stream: the user's words first, then the
reply checkpointed about once a second, then its final status and llama.cpp's figures.

Three layers, each built on the one before: `Checkpointer` saves one growing reply (the GUI
thread uses it directly, fed by its worker's signals); `begin_turn` records one whole turn;
`ChatSession` is a stored conversation talking to an engine, one recorded turn per `send` — the
CLI's `chat` command, and anything else headless. There is no other recording path: a chat that
should leave no trace uses a `Store(":memory:")`.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Protocol

from slmchat.core.generation import (
    ChatMessage,
    FinishReason,
    Generation,
    GenerationSettings,
    GenerationStats,
    ModelInfo,
    Role,
    SplitReply,
    ThinkingMarkers,
    split_reply,
)
from slmchat.core.store.reader import Reader
from slmchat.core.store.records import Message, MessageStatus
from slmchat.core.store.store import Store

CHECKPOINT_INTERVAL_S = 1.0


class Checkpointer:
    """Collects a streaming reply's pieces and saves it at most once per `interval_s`.

    The first piece is saved at once (so a crash right after the first token still leaves it);
    later pieces within the interval wait for the next save. The pieces are the engine's raw text:
    from a thinking model (`markers`, from `ModelInfo.thinking`) they are cut with `split_reply`,
    and the answer is stored as the reply's content, the thinking apart, with how long it lasted.
    `clock` is injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        message_id: int,
        *,
        markers: ThinkingMarkers | None = None,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.message_id = message_id
        # May be set until the model's first piece: the GUI learns which model answers only then.
        self.markers = markers
        self._interval_s = interval_s
        self._clock = clock
        self._text = ""
        self._last_save: float | None = None
        self._saved_length = 0
        self._first_piece_at: float | None = None
        self._last_piece_at = 0.0
        self._thought_until: float | None = None  # when the thinking block closed
        self.split = SplitReply("", "", False)  # the reply so far, cut into thinking and answer

    @property
    def text(self) -> str:
        """The raw reply so far, thinking markers and all (what the engine produced)."""
        return self._text

    @property
    def thinking_seconds(self) -> float | None:
        """How long the model thought: from the first piece to the one that closed the thinking
        (to the latest, while it has not); None when it did not think."""
        if self._first_piece_at is None or not (self.split.thinking or self.split.thinking_open):
            return None
        end = self._thought_until if self._thought_until is not None else self._last_piece_at
        return end - self._first_piece_at

    def append(self, piece: str) -> bool:
        """Add a piece; returns True when this call saved the reply to the database."""
        self._text += piece
        now = self._clock()
        if self._first_piece_at is None:
            self._first_piece_at = now
        self._last_piece_at = now
        if self.markers is not None:
            was_thinking = self.split.thinking_open
            self.split = split_reply(self._text, self.markers)
            if was_thinking and not self.split.thinking_open:
                self._thought_until = now
        else:
            self.split = SplitReply("", self._text, False)
        if self._last_save is not None and now - self._last_save < self._interval_s:
            return False
        self.flush()
        self._last_save = now
        return True

    def flush(self) -> None:
        """Save now whatever has not been saved yet."""
        if len(self._text) != self._saved_length:
            self._store.checkpoint(self.message_id, self.split.answer, thinking=self.split.thinking,
                                   thinking_seconds=self.thinking_seconds)
            self._saved_length = len(self._text)

    def finish(self, stats: GenerationStats) -> Message:
        """Store the final answer and thinking with how the reply ended."""
        return self._store.finish_reply(self.message_id, self.split.answer, stats, thinking=self.split.thinking,
                                        thinking_seconds=self.thinking_seconds)


class Turn:
    """One user message and its reply, recorded as they happen. Use it as a context manager:
    leaving the block without `finish` stores the reply as stopped (Ctrl+C), as the engine
    reported it (its process died: interrupted) or as an error (any other exception), always
    keeping the text received so far.
    """

    def __init__(
        self, store: Store, user_message: Message, reply: Message, checkpointer: Checkpointer
    ) -> None:
        self.store = store
        self.user_message = user_message
        self.reply = reply
        self.stats: GenerationStats | None = None  # how the reply ended, once it has
        self._checkpointer = checkpointer
        self._generation: Generation | None = None
        self._finished = False

    @property
    def conversation_id(self) -> int:
        return self.user_message.conversation_id

    @property
    def messages(self) -> list[ChatMessage]:
        """What to send the engine: the system prompt, then the shown branch up to this message."""
        return history_for_engine(self.store, self.conversation_id, up_to=self.user_message.id)

    @property
    def text(self) -> str:
        return self._checkpointer.text

    def append(self, piece: str) -> None:
        self._checkpointer.append(piece)

    def stream(self, generation: Generation, show: Callable[[str], None] | None = None) -> Message:
        """Record `generation` as the reply: each piece (also passed to `show`), then its end.

        When the generation fails part-way, its stats already say how (the engine process died:
        interrupted; the engine failed: error) and leaving the `with` block stores that.
        """
        self._generation = generation
        for piece in generation:
            self.append(piece)
            if show is not None:
                show(piece)
        return self.finish(generation.stats)

    def finish(self, stats: GenerationStats) -> Message:
        self.reply = self._checkpointer.finish(stats)
        self.stats = stats
        self._finished = True
        return self.reply

    def __enter__(self) -> Turn:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._finished:
            return
        generation = self._generation
        if generation is not None:
            generation.close()  # abandoned mid-stream (Ctrl+C, a broken pipe): stop the engine too
        reported = generation.stats if generation is not None else None
        if reported is not None and reported.finish_reason in (FinishReason.INTERRUPTED, FinishReason.ERROR):
            self.finish(reported)
        elif exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            stopped = reported or GenerationStats()
            self.finish(dataclasses.replace(stopped, finish_reason=FinishReason.STOPPED))
        else:
            self.finish(GenerationStats(finish_reason=FinishReason.ERROR, error=str(exc)))


def begin_turn(
    store: Store,
    prompt: str,
    *,
    conversation_id: int | None = None,
    model: str = "",
    system_prompt: str = "",
    settings: GenerationSettings | None = None,
    markers: ThinkingMarkers | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Turn:
    """Commit the user's `prompt` (to a new conversation, or appended to the shown branch of
    `conversation_id`) and open a streaming reply for it.

    `system_prompt` and `settings` apply to a new conversation only; a stored conversation keeps
    its own (read them from `store.conversation(turn.conversation_id)`). `markers`: the thinking
    markers of the model that answers (`ModelInfo.thinking`), to store its thinking apart.
    """
    if conversation_id is None:
        conversation_id = store.new_conversation(
            model=model, system_prompt=system_prompt, settings=settings
        ).id
    elif model:
        store.update_conversation(conversation_id, model=model)
    user_message = store.add_user_message(conversation_id, prompt)
    reply = store.start_reply(conversation_id, model=model)
    return Turn(store, user_message, reply, Checkpointer(store, reply.id, markers=markers, clock=clock))


def history_for_engine(store: Reader, conversation_id: int, *, up_to: int | None = None) -> list[ChatMessage]:
    """The shown branch as engine input: the system prompt first, then the turns.

    Replies that failed or were never written (empty) are left out: they are not something the
    model said. Stopped and interrupted replies keep the text they have. A reply's thinking is
    never sent back: only its answer (its content) is, as thinking models' templates expect.
    """
    conversation = store.conversation(conversation_id)
    history = [ChatMessage(Role.SYSTEM, conversation.system_prompt)] if conversation.system_prompt else []
    for message in store.branch(conversation_id):
        if message.role is Role.ASSISTANT and (message.status is MessageStatus.ERROR or not message.content):
            continue
        history.append(ChatMessage(message.role, message.content))
        if message.id == up_to:
            break
    return history


def session_key(conversation_id: int) -> str:
    """The engine's name for a stored conversation (`stream_chat(session=...)`,
    `forget_session`): one spelling for the GUI and the CLI, so either continues the other's
    saved KV state."""
    return f"conversation-{conversation_id}"


class ChatEngine(Protocol):
    """What a chat session needs of a model: `Engine` in-process, `EngineClient` across processes."""

    info: ModelInfo  # its `thinking` markers say how to cut a reply into thinking and answer

    def stream_chat(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None, *, session: str | None = None) -> Generation: ...


class ChatSession:
    """A stored conversation and the engine answering in it: every `send` is one recorded turn.

    The store is the conversation's only memory. Each turn's history is read back from it (the
    shown branch, system prompt first), so the model sees exactly what was stored — by this
    session, by an earlier run, or by the GUI. A new conversation is created with its first
    message, so a session that never sends leaves nothing behind.

    The engine keeps the conversation's KV state on disk (`session_key`), so a later run that
    continues it reads back only the new message; `save_model_state=False` turns that off for a
    chat that must leave no trace.
    """

    def __init__(
        self,
        store: Store,
        engine: ChatEngine,
        *,
        conversation_id: int | None = None,
        model: str = "",
        system_prompt: str = "",
        settings: GenerationSettings | None = None,
        save_model_state: bool = True,
    ) -> None:
        """Continue `conversation_id` with its own system prompt and settings (change them in
        the store first to change them), or start a new conversation with these. `model` is
        stored with each turn: how the user names the model (a library id, or a path).
        """
        self.store = store
        self.engine = engine
        self.model = model
        self.conversation_id = conversation_id
        if conversation_id is not None:
            conversation = store.conversation(conversation_id)
            system_prompt, settings = conversation.system_prompt, conversation.settings
        self.system_prompt = system_prompt
        self.settings = settings or GenerationSettings()
        self.save_model_state = save_model_state

    def send(self, text: str, show: Callable[[str], None] | None = None,
             cancel: threading.Event | None = None) -> Turn:
        """Store `text`, ask the model, and record its reply while passing each piece to `show`.

        Returns the finished turn (`turn.reply`, `turn.stats`). A `cancel` set from another
        thread (or a signal handler) ends the reply within a token, stored as stopped with its
        text. An engine failure is stored with the reply, then raised.
        """
        with begin_turn(self.store, text, conversation_id=self.conversation_id, model=self.model,
                        system_prompt=self.system_prompt, settings=self.settings,
                        markers=self.engine.info.thinking) as turn:
            self.conversation_id = turn.conversation_id
            session = session_key(turn.conversation_id) if self.save_model_state else None
            turn.stream(self.engine.stream_chat(turn.messages, self.settings, cancel, session=session), show)
        return turn
