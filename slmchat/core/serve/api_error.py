"""Errors in the shape OpenAI's API answers them, so every OpenAI client shows the message.

`{"error": {"message", "type", "param", "code"}}` with the HTTP status that goes with it; a
slmchat error keeps its own sentence (it is written for the person using the client).
"""

from __future__ import annotations

from typing import Any

from slmchat.core.errors import (
    ContextFull,
    EngineError,
    ModelFileError,
    NotAChatModel,
    NotEnoughMemory,
    SlmchatError,
)

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class ApiError(Exception):
    """A request answered with an error: `status` is the HTTP status, the rest is OpenAI's body."""

    def __init__(self, status: int, message: str, *, type: str = INVALID_REQUEST,
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    """A 400 for a request the client should change."""
    return ApiError(400, message, param=param, code=code)


def from_slmchat_error(error: SlmchatError) -> ApiError:
    """The answer for an error the model or its process raised while serving a request."""
    message = str(error)
    if isinstance(error, ContextFull):
        return ApiError(400, message, param="messages", code="context_length_exceeded")
    if isinstance(error, NotAChatModel):
        return ApiError(400, message, param="model", code="model_not_supported")
    if isinstance(error, NotEnoughMemory):
        return ApiError(503, message, type=SERVER_ERROR, code="not_enough_memory")
    if isinstance(error, EngineError | ModelFileError):  # crashed, hung, or llama.cpp failed
        return ApiError(500, message, type=SERVER_ERROR, code="model_failed")
    return ApiError(400, message)
