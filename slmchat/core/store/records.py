"""The records the conversation store hands out, and their conversion from and to SQLite rows."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from slmchat.core.generation import FinishReason, GenerationSettings, Role


class MessageStatus(str, enum.Enum):
    """Where a message is in its life. `reason` on the message says why a reply ended."""

    COMPLETE = "complete"  # written by the user, or a reply that ran to a normal end
    STREAMING = "streaming"  # a reply being generated right now
    STOPPED = "stopped"  # the user pressed Stop
    INTERRUPTED = "interrupted"  # the app or the engine died mid-reply; the text is kept
    ERROR = "error"  # generation failed; `error` says how


# How a finished generation maps to a stored status. LENGTH and CONTEXT_FULL are normal ends
# (the reply is whole as far as the engine is concerned); the reason is still stored and shown.
STATUS_FOR_REASON: dict[FinishReason, MessageStatus] = {
    FinishReason.DONE: MessageStatus.COMPLETE,
    FinishReason.LENGTH: MessageStatus.COMPLETE,
    FinishReason.CONTEXT_FULL: MessageStatus.COMPLETE,
    FinishReason.STOPPED: MessageStatus.STOPPED,
    FinishReason.INTERRUPTED: MessageStatus.INTERRUPTED,
    FinishReason.ERROR: MessageStatus.ERROR,
}


@dataclass(frozen=True)
class Message:
    """One node of a conversation's message tree; siblings share a `parent_id`."""

    id: int
    conversation_id: int
    parent_id: int | None
    role: Role
    content: str
    status: MessageStatus
    reason: FinishReason | None  # why a reply ended; None for user and system messages
    error: str  # the error text when status is ERROR
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    ttft: float | None  # seconds from request to the first token
    tokens_per_s: float | None  # decode speed
    created: datetime
    updated: datetime
    thinking: str = ""  # a thinking model's reasoning, kept apart from `content` (its answer)
    thinking_seconds: float | None = None  # how long it thought; None when it did not
    sources: tuple[dict[str, Any], ...] = ()  # the documents the reply cites (`check_sources`)


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created: datetime
    updated: datetime
    model: str
    system_prompt: str
    persona_id: int | None
    settings: GenerationSettings | None  # None: use the app's defaults
    pinned: bool
    deleted_at: datetime | None  # set while the conversation is in the trash
    current_leaf_id: int | None  # the last message of the branch that is shown


@dataclass(frozen=True)
class Persona:
    id: int
    name: str
    system_prompt: str
    settings: GenerationSettings | None
    created: datetime
    updated: datetime


@dataclass(frozen=True)
class SearchHit:
    """A search result: a message (message_id set) or a conversation title (message_id None)."""

    conversation_id: int
    conversation_title: str
    message_id: int | None
    role: Role | None
    snippet: str  # matched words wrapped in the caller's highlight marks
    created: datetime
    in_thinking: bool = False  # the words were found in a reply's thinking, not in its answer


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_text(moment: datetime) -> str:
    """Fixed-width UTC ISO text, so that text order is time order inside SQLite."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def settings_to_json(settings: GenerationSettings | None) -> str | None:
    return None if settings is None else json.dumps(dataclasses.asdict(settings), sort_keys=True)


def settings_from_dict(values: dict[str, Any]) -> GenerationSettings:
    """Unknown keys (written by a newer version) are ignored rather than fatal."""
    known = {field.name for field in dataclasses.fields(GenerationSettings)}
    return GenerationSettings(**{key: value for key, value in values.items() if key in known})


def settings_from_json(text: str | None) -> GenerationSettings | None:
    return None if text is None else settings_from_dict(json.loads(text))


SOURCE_FIELDS = ("file", "place", "snippet")


def check_sources(sources: Any) -> tuple[dict[str, Any], ...]:
    """Sources as the store keeps them: a list of JSON objects, each with text "file" (the
    document's name), "place" (where in it, e.g. "page 3") and "snippet" (the words cited); other
    fields are kept as they are. Raises ValueError naming the first source that is not so."""
    if not isinstance(sources, (list, tuple)):
        raise ValueError("sources should be a list")
    for number, source in enumerate(sources, start=1):
        if not isinstance(source, dict) or not all(isinstance(source.get(key), str) for key in SOURCE_FIELDS):
            raise ValueError(f'source {number} should have text "file", "place" and "snippet"')
        try:
            json.dumps(source)  # anything else in it must be JSON too
        except (TypeError, ValueError):
            raise ValueError(f"source {number} holds something that is not JSON") from None
    return tuple(dict(source) for source in sources)


def sources_to_json(sources: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str | None:
    return json.dumps(list(sources), ensure_ascii=False) if sources else None


def message_from_row(row: dict[str, Any]) -> Message:
    return Message(
        id=row["id"],
        conversation_id=row["conversation_id"],
        parent_id=row["parent_id"],
        role=Role(row["role"]),
        content=row["content"],
        status=MessageStatus(row["status"]),
        reason=None if row["reason"] is None else FinishReason(row["reason"]),
        error=row["error"],
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        ttft=row["ttft"],
        tokens_per_s=row["tokens_per_s"],
        created=datetime.fromisoformat(row["created"]),
        updated=datetime.fromisoformat(row["updated"]),
        thinking=row["thinking"] or "",
        thinking_seconds=row["thinking_seconds"],
        sources=tuple(json.loads(row["sources"])) if row["sources"] else (),
    )


def conversation_from_row(row: dict[str, Any]) -> Conversation:
    return Conversation(
        id=row["id"],
        title=row["title"],
        created=datetime.fromisoformat(row["created"]),
        updated=datetime.fromisoformat(row["updated"]),
        model=row["model"],
        system_prompt=row["system_prompt"],
        persona_id=row["persona_id"],
        settings=settings_from_json(row["settings"]),
        pinned=bool(row["pinned"]),
        deleted_at=from_text(row["deleted_at"]),
        current_leaf_id=row["current_leaf_id"],
    )


def persona_from_row(row: dict[str, Any]) -> Persona:
    return Persona(
        id=row["id"],
        name=row["name"],
        system_prompt=row["system_prompt"],
        settings=settings_from_json(row["settings"]),
        created=datetime.fromisoformat(row["created"]),
        updated=datetime.fromisoformat(row["updated"]),
    )
