"""Another app's chat, kept in the user's history when they asked for that ("Keep other apps'
chats in my history"; off by default, and never in `slmchat-cli serve`).

Each request becomes a conversation of its own whose title starts with `FROM_ANOTHER_APP`, so
the sidebar tells it from the user's own chats; the messages the app sent are stored as they
came, then the reply with llama.cpp's figures. One transaction: all of it or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from slmchat.core.generation import ChatMessage, GenerationStats, Role
from slmchat.core.store.records import Conversation
from slmchat.core.store.store import Store, auto_title

FROM_ANOTHER_APP = "From another app: "


def record_api_chat(store: Store, model: str, messages: Sequence[ChatMessage], reply: str,
                    stats: GenerationStats) -> Conversation:
    """Store the chat and its reply as a new conversation; returns it."""
    system = "\n\n".join(m.content for m in messages if m.role == Role.SYSTEM)
    turns = [m for m in messages if m.role != Role.SYSTEM]
    first = next((m.content for m in turns if m.role == Role.USER), "")
    with store.transaction():
        conversation = store.new_conversation(title=FROM_ANOTHER_APP + auto_title(first), model=model,
                                              system_prompt=system)
        for message in turns:
            if message.role == Role.USER:
                store.add_user_message(conversation.id, message.content)
            else:
                earlier = store.start_reply(conversation.id, model=model)
                store.finish_reply(earlier.id, message.content, GenerationStats())
        answer = store.start_reply(conversation.id, model=model)
        store.finish_reply(answer.id, reply, stats)
    return store.conversation(conversation.id)
