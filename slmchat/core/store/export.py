"""Export conversations to Markdown and JSON, and import JSON back.

The JSON keeps everything needed to rebuild a conversation: the message tree (ids are local to
the file, parents refer to them), statuses, counts and timestamps. Importing always creates new
conversations, so a file can be imported twice without touching what is there.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slmchat.core.errors import StoreError
from slmchat.core.generation import FinishReason, GenerationSettings, Role
from slmchat.core.store.reader import Reader
from slmchat.core.store.records import (
    Message,
    MessageStatus,
    check_sources,
    settings_from_dict,
    settings_to_json,
    sources_to_json,
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
    "thinking",
    "thinking_seconds",
    "sources",
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
        "thinking": message.thinking,
        "thinking_seconds": message.thinking_seconds,
        "sources": list(message.sources),
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
        lines += [f"## {heading}", ""] + _thinking_markdown(message) + [message.content, ""]
        lines += _sources_markdown(message)
        if message.status is not MessageStatus.COMPLETE:
            note = message.status.value + (f": {message.error}" if message.error else "")
            lines += [f"*({note})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def _thinking_markdown(message: Message) -> list[str]:
    """A reply's thinking as a quote before its answer, headed by how long it lasted."""
    if not message.thinking:
        return []
    seconds = "" if message.thinking_seconds is None else f" for {message.thinking_seconds:.0f} s"
    return [f"*Thought{seconds}:*", ""] + [f"> {line}".rstrip() for line in message.thinking.splitlines()] + [""]


def _sources_markdown(message: Message) -> list[str]:
    """The documents a reply cites, one line each: file, place, and the words cited."""
    if not message.sources:
        return []
    cited = [f"- {source['file']}, {source['place']}: “{' '.join(source['snippet'].split())}”"
             for source in message.sources]
    return ["Sources:", ""] + cited + [""]


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

    The whole file is read and type-checked before anything is written, and the writing is one
    transaction: a file with any part invalid imports nothing, and says which part is wrong.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise NotAnExport("This file is not a slmchat conversation export.")
    if data.get("version") != VERSION:
        raise NotAnExport("This export was made by a different version of slmchat and cannot be read.")
    document = _Part(data, "the file")
    try:
        personas = [_read_persona(_Part(item, f"persona {n}"))
                    for n, item in enumerate(document.optional_items("personas"), start=1)]
        conversations = [_read_conversation(_Part(item, f"conversation {n}"))
                         for n, item in enumerate(document.items("conversations"), start=1)]
    except _Invalid as error:
        raise NotAnExport(f"This export file is damaged and was not imported: {error}.",
                          detail=str(error)) from None
    with store.db.atomic():
        for persona in personas:
            _import_persona(store, persona)
        return [_import_one(store, conversation) for conversation in conversations]


# --- reading an export: every value checked for its type before anything is written -----------
class _Invalid(ValueError):
    """One part of the file has the wrong shape; the text says where, for the user."""


@dataclass(frozen=True)
class _Part:
    """One JSON object of the file and where it is ("conversation 2, message 5"), for messages."""

    value: Any
    where: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, dict):
            raise _Invalid(f"{self.where} is not a set of named fields")

    def _get(self, key: str, required: bool = True) -> Any:
        if key not in self.value:
            if required:
                raise _Invalid(f'{self.where} has no "{key}"')
            return None
        return self.value[key]

    def wrong(self, key: str, expected: str) -> _Invalid:
        return _Invalid(f'"{key}" in {self.where} should be {expected}')

    def text(self, key: str, *, required: bool = True, nullable: bool = False) -> str | None:
        value = self._get(key, required)
        if value is None and (nullable or not required):
            return None
        if not isinstance(value, str):
            raise self.wrong(key, "text")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape such as "\ud800": not storable text
            raise self.wrong(key, "readable text") from None
        return value

    def whole(self, key: str) -> int | None:
        """A whole number or null (JSON's true/false are not numbers here)."""
        value = self._get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise self.wrong(key, "a whole number")
        return value

    def number(self, key: str, *, required: bool = True) -> float | None:
        value = self._get(key, required)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise self.wrong(key, "a number")
        return value

    def flag(self, key: str) -> bool:
        value = self._get(key)
        if not isinstance(value, bool):
            raise self.wrong(key, "true or false")
        return value

    def time(self, key: str, *, required: bool = True) -> str | None:
        value = self.text(key, required=required, nullable=not required)
        if value is None:
            return None
        try:
            return to_text(datetime.fromisoformat(value))
        except (ValueError, OverflowError):
            raise self.wrong(key, "a date and time") from None

    def choice(self, key: str, kind: type[enum.Enum], *, nullable: bool = False) -> Any:
        value = self._get(key)
        if value is None and nullable:
            return None
        try:
            return kind(value)
        except (ValueError, TypeError):
            raise self.wrong(key, "one of " + ", ".join(repr(m.value) for m in kind)) from None

    def items(self, key: str) -> list[Any]:
        value = self._get(key)
        if not isinstance(value, list):
            raise self.wrong(key, "a list")
        return value

    def optional_items(self, key: str) -> list[Any]:
        return [] if self._get(key, required=False) is None else self.items(key)

    def sources(self, key: str) -> tuple[dict[str, Any], ...]:
        """The documents a reply cites (`check_sources`); none when absent."""
        try:
            return check_sources(self.optional_items(key))
        except ValueError as error:
            raise _Invalid(f'"{key}" in {self.where}: {error}') from None

    def settings(self, key: str) -> GenerationSettings | None:
        """Sampling settings, each known field of its declared type; unknown fields (from a newer
        version) are ignored."""
        value = self._get(key, required=False)
        if value is None:
            return None
        part = _Part(value, f'the "{key}" of {self.where}')
        checked: dict[str, Any] = {}
        for name, declared in _SETTINGS_TYPES.items():
            if name not in value:
                continue
            if declared is str:  # a choice such as speculative "auto" / "off"
                checked[name] = part.text(name)
                continue
            number = part.whole(name) if declared is int else part.number(name)
            if number is None and not _SETTINGS_NULLABLE[name]:
                raise part.wrong(name, "a number")
            checked[name] = number
        return settings_from_dict(checked)


_SETTINGS_HINTS = typing.get_type_hints(GenerationSettings)
_SETTINGS_NULLABLE = {name: type(None) in typing.get_args(hint) for name, hint in _SETTINGS_HINTS.items()}
_SETTINGS_TYPES = {  # int, float or str, with `X | None` reduced to X
    name: next(t for t in (typing.get_args(hint) or (hint,)) if t is not type(None))
    for name, hint in _SETTINGS_HINTS.items()
}


@dataclass(frozen=True)
class _PersonaRecord:
    name: str
    system_prompt: str
    settings: GenerationSettings | None


@dataclass(frozen=True)
class _MessageRecord:
    id: int
    parent_id: int | None
    values: list[Any]  # in `_MESSAGE_FIELDS` order


@dataclass(frozen=True)
class _ConversationRecord:
    values: list[Any]  # the conversation's columns but its persona, see `_import_one`
    persona: str | None
    messages: list[_MessageRecord]
    shown_leaf_id: int | None


def _read_persona(part: _Part) -> _PersonaRecord:
    return _PersonaRecord(part.text("name"), part.text("system_prompt"), part.settings("settings"))


def _read_conversation(part: _Part) -> _ConversationRecord:
    values = [
        part.text("title"),
        part.time("created"),
        part.time("updated"),
        part.text("model"),
        part.text("system_prompt"),
        settings_to_json(part.settings("settings")),
        int(part.flag("pinned")),
        part.time("deleted_at", required=False),
    ]
    messages: list[_MessageRecord] = []
    seen: set[int] = set()
    for number, item in enumerate(part.items("messages"), start=1):
        message = _read_message(_Part(item, f"{part.where}, message {number}"))
        if message.id in seen:
            raise _Invalid(f"{part.where} has two messages numbered {message.id}")
        if message.parent_id is not None and message.parent_id not in seen:  # parents come first
            raise _Invalid(f"{part.where}, message {number} answers a message that is not before it")
        seen.add(message.id)
        messages.append(message)
    leaf = part.whole("shown_leaf_id") if "shown_leaf_id" in part.value else None
    if leaf is not None and leaf not in seen:
        raise _Invalid(f"{part.where} shows a message it does not have")
    return _ConversationRecord(values, part.text("persona", required=False, nullable=True), messages, leaf)


def _read_message(part: _Part) -> _MessageRecord:
    """A message's values; a reply that was streaming when exported is stored as interrupted
    (nothing will ever finish it)."""
    message_id = part.whole("id")
    if message_id is None:
        raise part.wrong("id", "a whole number")
    status = part.choice("status", MessageStatus)
    reason = part.choice("reason", FinishReason, nullable=True)
    if status is MessageStatus.STREAMING:
        status, reason = MessageStatus.INTERRUPTED, FinishReason.INTERRUPTED
    checked = {
        "role": part.choice("role", Role).value,
        "content": part.text("content"),
        "status": status.value,
        "reason": None if reason is None else reason.value,
        "error": part.text("error"),
        "model": part.text("model"),
        "prompt_tokens": part.whole("prompt_tokens"),
        "completion_tokens": part.whole("completion_tokens"),
        "ttft": part.number("ttft"),
        "tokens_per_s": part.number("tokens_per_s"),
        "created": part.time("created"),
        "updated": part.time("updated"),
        # added with thinking models and documents: absent from older exports
        "thinking": part.text("thinking", required=False) or None,
        "thinking_seconds": part.number("thinking_seconds", required=False),
        "sources": sources_to_json(part.sources("sources")),
    }
    return _MessageRecord(message_id, part.whole("parent_id"), [checked[field] for field in _MESSAGE_FIELDS])


# --- writing what was read ----------------------------------------------------------------------
def _import_one(store: Store, item: _ConversationRecord) -> int:
    title, created, updated, model, system_prompt, settings, pinned, deleted_at = item.values
    cursor = store.db.execute(
        "INSERT INTO conversations (title, created, updated, model, system_prompt, persona_id, settings, "
        "pinned, deleted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [title, created, updated, model, system_prompt, _persona_named(store, item.persona), settings,
         pinned, deleted_at],
    )
    conversation_id = int(cursor.lastrowid or 0)
    new_ids: dict[int, int] = {}
    for message in item.messages:
        cursor = store.db.execute(
            f"INSERT INTO messages (conversation_id, parent_id, {', '.join(_MESSAGE_FIELDS)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in _MESSAGE_FIELDS)})",
            [conversation_id, None if message.parent_id is None else new_ids[message.parent_id], *message.values],
        )
        new_ids[message.id] = int(cursor.lastrowid or 0)
    leaf = None if item.shown_leaf_id is None else new_ids[item.shown_leaf_id]
    store.db.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?", [leaf, conversation_id])
    return conversation_id


def _import_persona(store: Store, persona: _PersonaRecord) -> None:
    """Add a persona unless one of that name exists (importing twice adds nothing)."""
    if _persona_named(store, persona.name) is None:
        store.add_persona(persona.name, persona.system_prompt, persona.settings)


def _persona_named(store: Store, name: str | None) -> int | None:
    if name is None:
        return None
    row = store.db.execute("SELECT id FROM personas WHERE name = ? ORDER BY id LIMIT 1", [name]).fetchone()
    return None if row is None else int(row[0])
