"""The models the server offers, each in its own process with its own lane.

A chat or base model runs in an `EngineClient`, an embedding model in a `TaskClient`; what each
can do comes from its file's metadata (tasks/capabilities.py), so a request a model cannot
answer is refused by name before it reaches the model. A model whose process crashed is loaded
again before the next request, as the interactive CLI chat does.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from slmchat.core.errors import SlmchatError, UnsupportedModel
from slmchat.core.generation import EngineConfig, Generation
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.core.serve.api_error import ApiError, from_slmchat_error, invalid
from slmchat.core.serve.lane import Lane, Ticket, Work
from slmchat.core.serve.validate import EmbeddingRequest, GenerationRequest
from slmchat.core.tasks.capabilities import Capability
from slmchat.paths import Paths

log = logging.getLogger(__name__)

DEFAULT_MAX_WAITING = 8


@dataclass(frozen=True)
class ModelChoice:
    """A model to serve: the name clients use, its file, and what its metadata says it can do."""

    name: str
    path: Path
    capabilities: frozenset[Capability]


class ServedModel:
    """One model loaded in its process, answering one request at a time."""

    def __init__(self, choice: ModelChoice, *, n_threads: int | None, paths: Paths, max_waiting: int) -> None:
        self.name = choice.name
        self.capabilities = choice.capabilities
        self.created = int(choice.path.stat().st_mtime)
        self.client: EngineClient | TaskClient
        if Capability.EMBED in choice.capabilities:
            self.client = TaskClient(TaskKind.EMBED, choice.path, n_threads=n_threads, paths=paths)
            self.context = self.client.n_ctx
        elif choice.capabilities & {Capability.CHAT, Capability.COMPLETE}:
            self.client = EngineClient(EngineConfig(model_path=choice.path, n_threads=n_threads), paths=paths)
            self.context = self.client.info.n_ctx
        else:
            raise UnsupportedModel(f"{choice.path.name} can neither chat, continue text nor embed, so the "
                                   "server cannot offer it. Serve a chat, text or embedding model.")
        self.lane = Lane(choice.name, max_waiting)

    def _require(self, capability: Capability, endpoint: str) -> None:
        if capability not in self.capabilities:
            hint = {Capability.CHAT: "it has no chat format: use /v1/completions with it",
                    Capability.COMPLETE: "it writes no text: use /v1/embeddings with it",
                    Capability.EMBED: "it makes no sentence vectors: use an embedding model such as MiniLM"}
            raise invalid(f"The model {self.name} cannot answer {endpoint}: {hint[capability]}.",
                          param="model", code="model_not_supported")

    # --- requests: each returns at once with a ticket; the lane runs it ----------------------
    def chat(self, request: GenerationRequest) -> Ticket:
        self._require(Capability.CHAT, "/v1/chat/completions")
        engine = self._engine()
        return self.lane.submit(self._generating(
            lambda cancel: engine.stream_chat(request.messages, request.settings, cancel)))

    def complete(self, request: GenerationRequest) -> Ticket:
        self._require(Capability.COMPLETE, "/v1/completions")
        engine = self._engine()
        return self.lane.submit(self._generating(
            lambda cancel: engine.complete(request.prompt, request.settings, cancel)))

    def embed(self, request: EmbeddingRequest) -> Ticket:
        """The result is (vectors, prompt tokens)."""
        self._require(Capability.EMBED, "/v1/embeddings")
        client = self.client
        assert isinstance(client, TaskClient)

        def work(cancel: threading.Event, emit: Callable[[str], None]) -> object:
            with self._as_api_errors():
                vectors = client.embed(request.texts)
                return vectors, sum(len(client.tokens(text)) for text in request.texts)

        return self.lane.submit(work)

    def _engine(self) -> EngineClient:
        assert isinstance(self.client, EngineClient)
        return self.client

    def _generating(self, start: Callable[[threading.Event], Generation]) -> Work:
        """Work that streams a generation's pieces and returns its stats."""

        def work(cancel: threading.Event, emit: Callable[[str], None]) -> object:
            with self._as_api_errors():
                generation = start(cancel)
                for piece in generation:
                    emit(piece)
                return generation.stats

        return work

    @contextmanager
    def _as_api_errors(self) -> Iterator[None]:
        """Around a model call: a slmchat error becomes its API answer, and a dead process is
        loaded again for the next request."""
        try:
            yield
        except SlmchatError as error:
            self.revive()
            raise from_slmchat_error(error) from error

    def revive(self) -> None:
        """Load the model again when its process is gone (it crashed, hung or ran out of memory)."""
        if not self.client.alive:
            log.warning("the process of %s is gone; loading it again", self.name)
            try:
                self.client.reload()
            except SlmchatError as error:
                log.error("could not load %s again: %s", self.name, error)

    def close(self) -> None:
        self.lane.close()
        self.client.close()


class ServedModels:
    """The models by the names clients use."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self._models = {model.name: model for model in models}

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def get(self, name: str) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            raise ApiError(404, f"The model \"{name}\" is not served here. Served: {', '.join(self._models)}.",
                           param="model", code="model_not_found")
        return model

    def close(self) -> None:
        for model in self._models.values():
            model.close()


def load_models(choices: Iterable[ModelChoice], *, n_threads: int | None, paths: Paths,
                max_waiting: int = DEFAULT_MAX_WAITING) -> ServedModels:
    """Load every model in its process; when one fails, those already loaded are closed again."""
    loaded: list[ServedModel] = []
    try:
        for choice in choices:
            loaded.append(ServedModel(choice, n_threads=n_threads, paths=paths, max_waiting=max_waiting))
    except BaseException:
        for model in loaded:
            model.close()
        raise
    return ServedModels(loaded)
