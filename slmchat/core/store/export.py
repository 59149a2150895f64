"""Export conversations to Markdown and JSON, and import JSON back.

The JSON keeps everything needed to rebuild a conversation: the message tree (ids are local to
the file, parents refer to them), statuses, counts and timestamps. Importing always creates new
conversations, so a file can be imported twice without touching what is there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from slmchat.core.errors import StoreError
from slmchat.core.generation import FinishReason, Role
from slmchat.core.store.reader import Reader
from slmchat.core.store.records import (
    Message,
    MessageStatus,
    settings_from_dict,
    settings_to_json,
    to_text,
)
from slmchat.core.store.store import Store

FORMAT = "slmchat-conversations"
VERSION = 1

_MESSAGE_FIELDS = (
    "role",
    "content",
    "status",
    "reason",
    "error",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "ttft",
    "tokens_per_s",
    "created",
    "updated",
)


class NotAnExport(StoreError, ValueError):
    """The file is not a slmchat export, or was damaged."""


def _message_dict(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "parent_id": message.parent_id,
        "role": message.role.value,
        "content": message.content,
        "status": message.status.value,
        "reason": None if message.reason is None else message.reason.value,
        "error": message.error,
        "model": message.model,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "ttft": message.ttft,
        "tokens_per_s": message.tokens_per_s,
        "created": to_text(message.created),
        "updated": to_text(message.updated),
    }


def conversation_dict(reader: Reader, conversation_id: int, *, whole_tree: bool = False) -> dict[str, Any]:
    """One conversation as plain JSON-able data: the shown branch, or every branch."""
    conversation = reader.conversation(conversation_id)
    branch = reader.branch(conversation_id)
    messages = reader.messages(conversation_id) if whole_tree else branch
    persona = None if conversation.persona_id is None else reader.persona(conversation.persona_id).name
    return {
        "title": conversation.title,
        "created": to_text(conversation.created),
        "updated": to_text(conversation.updated),
        "model": conversation.model,
        "system_prompt": conversation.system_prompt,
        "persona": persona,
        "settings": None if conversation.settings is None else dataclasses.asdict(conversation.settings),
        "pinned": conversation.pinned,
        "deleted_at": None if conversation.deleted_at is None else to_text(conversation.deleted_at),
        "shown_leaf_id": branch[-1].id if branch else None,
        "messages": [_message_dict(message) for message in messages],
    }


def export_conversations(reader: Reader, conversation_ids: Iterable[int], *, whole_tree: bool = True) -> dict:
    """A file's worth of conversations (the format `import_conversations` reads)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "conversations": [conversation_dict(reader, cid, whole_tree=whole_tree) for cid in conversation_ids],
    }


def export_all(reader: Reader) -> dict:
    """Every conversation (trash included, every branch) and every persona in one document."""
    ids = [c.id for c in reader.conversations()] + [c.id for c in reader.conversations(trashed=True)]
    document = export_conversations(reader, sorted(ids))
    document["personas"] = [
        {
            "name": persona.name,
            "system_prompt": persona.system_prompt,
            "settings": None if persona.settings is None else dataclasses.asdict(persona.settings),
        }
        for persona in reader.personas()
    ]
    return document


def conversation_markdown(reader: Reader, conversation_id: int, *, whole_tree: bool = False) -> str:
    """Readable Markdown. With `whole_tree`, alternatives are numbered like 2.1, 2.2."""
    conversation = reader.conversation(conversation_id)
    lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
    facts = [f"- Started: {conversation.created:%Y-%m-%d %H:%M} UTC"]
    if conversation.model:
        facts.append(f"- Model: {conversation.model}")
    lines += facts + [""]
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt, ""]
    if whole_tree:
        labelled = _labelled_tree(reader.messages(conversation_id))
    else:
        labelled = [("", message) for message in reader.branch(conversation_id)]
    for label, message in labelled:
        heading = message.role.value.capitalize()
        if label:
            heading += f" ({label})"
        if message.model and message.role is Role.ASSISTANT:
            heading += f" · {message.model}"
        lines += [f"## {heading}", "", message.content, ""]
        if message.status is not MessageStatus.COMPLETE:
            note = message.status.value + (f": {message.error}" if message.error else "")
            lines += [f"*({note})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _labelled_tree(messages: list[Message]) -> list[tuple[str, Message]]:
    """Depth-first order with outline labels ("1", "1.2") showing where branches split."""
    children: dict[int | None, list[Message]] = {}
    for message in messages:
        children.setdefault(message.parent_id, []).append(message)
    out: list[tuple[str, Message]] = []

    def walk(parent: int | None, prefix: str) -> None:
        for number, child in enumerate(children.get(parent, []), start=1):
            label = f"{prefix}{number}"
            out.append((label, child))
            walk(child.id, label + ".")

    walk(None, "")
    return out


def import_conversations(store: Store, data: Any) -> list[int]:
    """Add the conversations of an export as new ones, in one transaction; returns their ids.

    Nothing is imported when any part of the file is invalid.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NotAnExport("This file is not a slmchat conversation export.")
    if data.get("version") != VERSION:
        raise NotAnExport("This export was made by a different version of slmchat and cannot be read.")
    try:
        with store.db.atomic():
            for persona in data.get("personas", []):
                _import_persona(store, persona)
            return [_import_one(store, conversation) for conversation in data["conversations"]]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise NotAnExport("This export file is damaged and was not imported.", detail=repr(error)) from error


def _import_one(store: Store, item: dict[str, Any]) -> int:
    persona_id = _persona_named(store, item.get("persona"))
    settings = None if item.get("settings") is None else settings_from_dict(item["settings"])
    cursor = store.db.execute(
        "INSERT INTO conversations (title, created, updated, model, system_prompt, persona_id, settings, "
        "pinned, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            str(item["title"]),
            _time(item["created"]),
            _time(item["updated"]),
            str(item["model"]),
            str(item["system_prompt"]),
            persona_id,
            settings_to_json(settings),
            int(bool(item["pinned"])),
            None if item.get("deleted_at") is None else _time(item["deleted_at"]),
        ],
    )
    conversation_id = int(cursor.lastrowid or 0)
    new_ids: dict[int, int] = {}
    for message in item["messages"]:  # parents come before their children in every export
        values = _checked_message(message)
        if message["id"] in new_ids:
            raise ValueError(f"message id {message['id']} appears twice")
        parent = None if message["parent_id"] is None else new_ids[message["parent_id"]]
        cursor = store.db.execute(
            f"INSERT INTO messages (conversation_id, parent_id, {', '.join(_MESSAGE_FIELDS)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in _MESSAGE_FIELDS)})",
            [conversation_id, parent, *values],
        )
        new_ids[message["id"]] = int(cursor.lastrowid or 0)
    leaf = item.get("shown_leaf_id")
    store.db.execute(
        "UPDATE conversations SET current_leaf_id = ? WHERE id = ?",
        [None if leaf is None else new_ids[leaf], conversation_id],
    )
    return conversation_id


def _checked_message(message: dict[str, Any]) -> list[Any]:
    """Field values in `_MESSAGE_FIELDS` order, validated; a reply that was streaming when
    exported is stored as interrupted (nothing will ever finish it)."""
    status = MessageStatus(message["status"])
    reason = None if message["reason"] is None else FinishReason(message["reason"])
    if status is MessageStatus.STREAMING:
        status, reason = MessageStatus.INTERRUPTED, FinishReason.INTERRUPTED
    checked = {
        **{field: message[field] for field in _MESSAGE_FIELDS},
        "role": Role(message["role"]).value,
        "content": str(message["content"]),
        "status": status.value,
        "reason": None if reason is None else reason.value,
        "created": _time(message["created"]),
        "updated": _time(message["updated"]),
    }
    return [checked[field] for field in _MESSAGE_FIELDS]


def _import_persona(store: Store, item: dict[str, Any]) -> None:
    """Add a persona unless one of that name exists (importing twice adds nothing)."""
    if _persona_named(store, str(item["name"])) is None:
        settings = None if item.get("settings") is None else settings_from_dict(item["settings"])
        store.add_persona(str(item["name"]), str(item["system_prompt"]), settings)


def _persona_named(store: Store, name: str | None) -> int | None:
    if name is None:
        return None
    row = store.db.execute("SELECT id FROM personas WHERE name = ? ORDER BY id LIMIT 1", [name]).fetchone()
    return None if row is None else int(row[0])


def _time(text: Any) -> str:
    return to_text(datetime.fromisoformat(str(text)))
