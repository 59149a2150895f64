"""OpenAI's answer shapes: chat completions and their chunks, text completions, embeddings,
the model list, and the server-sent events a stream is made of."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import numpy as np

from slmchat.core.generation import FinishReason, GenerationStats

_FINISH = {FinishReason.DONE: "stop", FinishReason.LENGTH: "length", FinishReason.CONTEXT_FULL: "length",
           FinishReason.STOPPED: "stop"}


class Reply:
    """One answer's identity (id, model, time), shared by all its chunks as OpenAI's are."""

    def __init__(self, model: str, *, chat: bool) -> None:
        self.chat = chat
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.model = model
        self.created = int(time.time())

    def _head(self, chunk: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {"id": self.id, "object": f"{kind}.chunk" if chunk and self.chat else kind,
                "created": self.created, "model": self.model}

    def whole(self, text: str, stats: GenerationStats) -> dict[str, Any]:
        """The non-streamed answer."""
        return {**self._head(False), "choices": [self._choice(text, finish_reason(stats), whole=True)],
                "usage": usage(stats)}

    def chunk(self, text: str | None, finish: str | None = None) -> dict[str, Any]:
        """A streamed piece; a chat's first chunk (text None) names the assistant's role."""
        return {**self._head(True), "choices": [self._choice(text, finish, whole=False)]}

    def usage_chunk(self, stats: GenerationStats) -> dict[str, Any]:
        """stream_options.include_usage: the last chunk, with no choices and the token counts."""
        return {**self._head(True), "choices": [], "usage": usage(stats)}

    def _choice(self, text: str | None, finish: str | None, *, whole: bool) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if not self.chat:
            choice["text"] = text or ""
        elif whole:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["delta"] = {"role": "assistant", "content": ""} if text is None and finish is None \
                else ({} if text is None else {"content": text})
        choice["logprobs"] = None
        choice["finish_reason"] = finish
        return choice


def finish_reason(stats: GenerationStats) -> str:
    return _FINISH.get(stats.finish_reason, "stop")


def usage(stats: GenerationStats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}


def embeddings(model: str, vectors: np.ndarray, tokens: int, *, as_base64: bool) -> dict[str, Any]:
    """The vectors as floats, or as base64 of little-endian float32 (what OpenAI's client asks for)."""
    def encode(vector: np.ndarray) -> Any:
        if as_base64:
            return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
        return vector.astype(float).tolist()

    return {"object": "list", "model": model,
            "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "slmchat"}


def model_list(cards: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": list(cards)}


def event(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: a JSON object, or OpenAI's closing `[DONE]`."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


DONE = event("[DONE]")
