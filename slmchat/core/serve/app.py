"""The Starlette application: OpenAI's routes over the served models.

A request is read within its size limit, validated, queued in its model's lane, and answered
whole or as server-sent events. From the moment it is queued until its answer is sent, the
client's going away cancels it: a generation nobody reads stops between two tokens, and a
request still waiting is skipped. A stream's first piece is awaited before the response
starts, so an error that comes before any text still gets its own HTTP status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from slmchat.core.generation import GenerationStats
from slmchat.core.serve import replies
from slmchat.core.serve.api_error import SERVER_ERROR, ApiError
from slmchat.core.serve.body import MAX_BODY_BYTES, read_json
from slmchat.core.serve.guard import Guard
from slmchat.core.serve.hosted import HostedModels
from slmchat.core.serve.lane import Ticket
from slmchat.core.serve.served import ServedModel, ServedModels
from slmchat.core.serve.validate import (
    GenerationRequest,
    chat_request,
    completion_request,
    embedding_request,
    model_name,
)

log = logging.getLogger(__name__)

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def build_app(models: ServedModels | HostedModels, *, api_key: str | None = None,
              max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The API over `models`; with `api_key`, every request must carry it."""

    async def model_for(request: Request) -> tuple[dict, ServedModel]:
        body = await read_json(request, max_body_bytes)
        return body, models.get(model_name(body))

    async def list_models(request: Request) -> Response:
        return JSONResponse(replies.model_list(replies.model_card(m.name, m.created) for m in models))

    async def one_model(request: Request) -> Response:
        model = models.get(request.path_params["model"])
        return JSONResponse(replies.model_card(model.name, model.created))

    async def chat(request: Request) -> Response:
        body, model = await model_for(request)
        wanted = chat_request(body, model.context)
        return await _generation(request, model.chat(wanted), replies.Reply(model.name, chat=True), wanted)

    async def complete(request: Request) -> Response:
        body, model = await model_for(request)
        wanted = completion_request(body, model.context)
        return await _generation(request, model.complete(wanted), replies.Reply(model.name, chat=False), wanted)

    async def embed(request: Request) -> Response:
        body, model = await model_for(request)
        wanted = embedding_request(body)
        ticket = model.embed(wanted)
        async with _cancelled_if_gone(request, ticket):
            _, outcome = await ticket.result()
        if outcome is None:  # stopped: its client went away
            raise ClientDisconnect()
        vectors, tokens = outcome
        return JSONResponse(replies.embeddings(model.name, vectors, tokens, as_base64=wanted.base64))

    routes = [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model:path}", one_model, methods=["GET"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/completions", complete, methods=["POST"]),
        Route("/v1/embeddings", embed, methods=["POST"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, ClientDisconnect: _gone, Exception: _bug}
    return Starlette(routes=routes, exception_handlers=handlers,  # type: ignore[arg-type]
                     middleware=[Middleware(Guard, api_key=api_key)])


async def _generation(request: Request, ticket: Ticket, reply: replies.Reply,
                      wanted: GenerationRequest) -> Response:
    if not wanted.stream:
        async with _cancelled_if_gone(request, ticket):
            text, stats = await ticket.result()
        return JSONResponse(reply.whole(text, stats))
    watch = _watch(request, ticket)
    pieces = ticket.pieces()
    try:
        first = await anext(pieces, None)
    except BaseException:
        _stop(ticket, watch)
        raise
    return StreamingResponse(_events(reply, first, pieces, ticket, watch, wanted.include_usage),
                             media_type="text/event-stream", headers=_STREAM_HEADERS)


async def _events(reply: replies.Reply, first: str | None, pieces: AsyncIterator[str], ticket: Ticket,
                  watch: asyncio.Task, include_usage: bool) -> AsyncIterator[bytes]:
    """The stream's events; when it ends early (the client left), the generation is stopped."""
    try:
        if reply.chat:
            yield replies.event(reply.chunk(None))
        if first is not None:
            yield replies.event(reply.chunk(first))
            async for piece in pieces:
                yield replies.event(reply.chunk(piece))
        stats: GenerationStats = ticket.outcome
        yield replies.event(reply.chunk(None, replies.finish_reason(stats)))
        if include_usage:
            yield replies.event(reply.usage_chunk(stats))
        yield replies.DONE
    except ApiError as error:  # the model failed after the answer began: say so in the stream
        yield replies.event(error.body())
    finally:
        _stop(ticket, watch)


# --- a client that goes away ------------------------------------------------------------------
async def _until_gone(request: Request, ticket: Ticket) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    ticket.cancel.set()


def _watch(request: Request, ticket: Ticket) -> asyncio.Task:
    return asyncio.get_running_loop().create_task(_until_gone(request, ticket))


def _stop(ticket: Ticket, watch: asyncio.Task) -> None:
    """The answer is over (sent, failed, or nobody reads it): the generation stops if it still runs."""
    watch.cancel()
    ticket.cancel.set()


@contextlib.asynccontextmanager
async def _cancelled_if_gone(request: Request, ticket: Ticket) -> AsyncIterator[None]:
    watch = _watch(request, ticket)
    try:
        yield
    finally:
        _stop(ticket, watch)


# --- errors in OpenAI's shape -----------------------------------------------------------------
def _api_error(request: Request, error: ApiError) -> Response:
    return JSONResponse(error.body(), error.status, error.headers)


def _http_error(request: Request, error: HTTPException) -> Response:
    message = {404: f"There is no {request.url.path} here. This server answers /v1/models, "
                    "/v1/chat/completions, /v1/completions and /v1/embeddings.",
               405: f"{request.url.path} does not take {request.method} requests."}.get(
        error.status_code, str(error.detail))
    return _api_error(request, ApiError(error.status_code, message, headers=dict(error.headers or {})))


def _gone(request: Request, error: ClientDisconnect) -> Response:
    return _api_error(request, ApiError(400, "The client went away before its request was read."))


def _bug(request: Request, error: Exception) -> Response:
    log.error("unexpected error answering %s", request.url.path, exc_info=error)
    return _api_error(request, ApiError(500, "Something went wrong in the server; details are in its log.",
                                        type=SERVER_ERROR))
