"""Recording one chat turn in the store while the reply streams: the user's words first, then the
reply checkpointed about once a second, then its final status and llama.cpp's figures.

`Checkpointer` is what the GUI thread uses per reply; `begin_turn` is the whole turn for the
CLI's `chat` command (and anything else headless).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from slmchat.core.generation import ChatMessage, FinishReason, GenerationSettings, GenerationStats, Role
from slmchat.core.store import Reader, Store
from slmchat.core.store_records import Message, MessageStatus

CHECKPOINT_INTERVAL_S = 1.0


class Checkpointer:
    """Collects a streaming reply's pieces and saves the text at most once per `interval_s`.

    The first piece is saved at once (so a crash right after the first token still leaves it);
    later pieces within the interval wait for the next save. `clock` is injectable for tests.
    """

    def __init__(
        self,
        store: Store,
        message_id: int,
        *,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self.message_id = message_id
        self._interval_s = interval_s
        self._clock = clock
        self._pieces: list[str] = []
        self._last_save: float | None = None
        self._saved_length = 0

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def append(self, piece: str) -> bool:
        """Add a piece; returns True when this call saved the text to the database."""
        self._pieces.append(piece)
        now = self._clock()
        if self._last_save is not None and now - self._last_save < self._interval_s:
            return False
        self.flush()
        self._last_save = now
        return True

    def flush(self) -> None:
        """Save now whatever has not been saved yet."""
        text = self.text
        if len(text) != self._saved_length:
            self._store.checkpoint(self.message_id, text)
            self._saved_length = len(text)

    def finish(self, stats: GenerationStats) -> Message:
        """Store the final text with how the reply ended."""
        return self._store.finish_reply(self.message_id, self.text, stats)


class Turn:
    """One user message and its reply, recorded as they happen. Use it as a context manager:
    leaving the block without `finish` stores the reply as stopped (Ctrl+C) or as an error
    (any other exception), keeping the text received so far.
    """

    def __init__(
        self, store: Store, user_message: Message, reply: Message, checkpointer: Checkpointer
    ) -> None:
        self.store = store
        self.user_message = user_message
        self.reply = reply
        self._checkpointer = checkpointer
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

    def finish(self, stats: GenerationStats) -> Message:
        self.reply = self._checkpointer.finish(stats)
        self._finished = True
        return self.reply

    def __enter__(self) -> Turn:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._finished:
            return
        if exc_type is None or issubclass(exc_type, KeyboardInterrupt):
            self.finish(GenerationStats(finish_reason=FinishReason.STOPPED))
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
    clock: Callable[[], float] = time.monotonic,
) -> Turn:
    """Commit the user's `prompt` (to a new conversation, or appended to the shown branch of
    `conversation_id`) and open a streaming reply for it.

    `system_prompt` and `settings` apply to a new conversation only; a stored conversation keeps
    its own (read them from `store.conversation(turn.conversation_id)`).
    """
    if conversation_id is None:
        conversation_id = store.new_conversation(
            model=model, system_prompt=system_prompt, settings=settings
        ).id
    elif model:
        store.update_conversation(conversation_id, model=model)
    user_message = store.add_user_message(conversation_id, prompt)
    reply = store.start_reply(conversation_id, model=model)
    return Turn(store, user_message, reply, Checkpointer(store, reply.id, clock=clock))


def history_for_engine(store: Reader, conversation_id: int, *, up_to: int | None = None) -> list[ChatMessage]:
    """The shown branch as engine input: the system prompt first, then the turns.

    Replies that failed or were never written (empty) are left out: they are not something the
    model said. Stopped and interrupted replies keep the text they have.
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
