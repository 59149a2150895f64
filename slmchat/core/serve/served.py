"""The models the server offers, each in its own process with its own lane.

A chat or base model runs in an `EngineClient`, an embedding model in a `TaskClient`; what each
can do comes from its file's metadata (tasks/capabilities.py), so a request a model cannot
answer is refused by name before it reaches the model. A model whose process crashed is loaded
again before the next request, as the interactive CLI chat does. The window serves its own
loaded model the same way (hosted.py), its engine shared with its own chat (turns.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmchat.core.errors import SlmchatError, UnsupportedModel
from slmchat.core.generation import EngineConfig, FinishReason, Generation, GenerationStats
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.core.serve.api_error import ApiError, from_slmchat_error, invalid
from slmchat.core.serve.lane import Lane, Ticket, Work
from slmchat.core.serve.stops import StopScanner
from slmchat.core.serve.validate import EmbeddingRequest, GenerationRequest
from slmchat.core.tasks.capabilities import Capability
from slmchat.paths import Paths

log = logging.getLogger(__name__)

DEFAULT_MAX_WAITING = 8
EMBED_BATCH = 16  # texts per call to an embedding model: how soon a departed client's request stops


@dataclass(frozen=True)
class ModelChoice:
    """A model to serve: the name clients use, its file, and what its metadata says it can do."""

    name: str
    path: Path
    capabilities: frozenset[Capability]


class ServedModel:
    """One model answering one request at a time through its lane.

    `client` is an `EngineClient` (chat or base model) or an embedding `TaskClient`. `gone` is
    called on the lane's thread when the client's process died serving a request; by default the
    model is loaded again (the server owns it), the window passes its own (it owns the engine).
    `in_use(True/False)` brackets each request the model works on; `answered(request, text,
    stats)` hears each generation that ended (both on the lane's thread).
    """

    def __init__(self, name: str, client: EngineClient | TaskClient, capabilities: frozenset[Capability], *,
                 context: int, created: int, lane: Lane, gone: Callable[[], None] | None = None,
                 in_use: Callable[[bool], None] | None = None,
                 answered: Callable[[GenerationRequest, str, GenerationStats], None] | None = None) -> None:
        self.name = name
        self.client = client
        self.capabilities = capabilities
        self.context = context
        self.created = created
        self.lane = lane
        self._gone = gone or self.revive
        self._in_use = in_use or (lambda _using: None)
        self._answered = answered or (lambda _request, _text, _stats: None)

    @classmethod
    def load(cls, choice: ModelChoice, *, n_threads: int | None, paths: Paths, max_waiting: int) -> ServedModel:
        """Load `choice` in its own process, with a lane of its own."""
        client: EngineClient | TaskClient
        if Capability.EMBED in choice.capabilities:
            client = TaskClient(TaskKind.EMBED, choice.path, n_threads=n_threads, paths=paths)
            context = client.n_ctx
        elif choice.capabilities & {Capability.CHAT, Capability.COMPLETE}:
            client = EngineClient(EngineConfig(model_path=choice.path, n_threads=n_threads), paths=paths)
            context = client.info.n_ctx
        else:
            raise UnsupportedModel(f"{choice.path.name} can neither chat, continue text nor embed, so the "
                                   "server cannot offer it. Serve a chat, text or embedding model.")
        return cls(choice.name, client, choice.capabilities, context=context,
                   created=int(choice.path.stat().st_mtime), lane=Lane(choice.name, max_waiting))

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
            request, lambda cancel: engine.stream_chat(request.messages, request.settings, cancel)))

    def complete(self, request: GenerationRequest) -> Ticket:
        self._require(Capability.COMPLETE, "/v1/completions")
        engine = self._engine()
        return self.lane.submit(self._generating(
            request, lambda cancel: engine.complete(request.prompt, request.settings, cancel)))

    def embed(self, request: EmbeddingRequest) -> Ticket:
        """The result is (vectors, prompt tokens). The texts go to the model a few at a time, so
        a client that went away stops a long request within one batch."""
        self._require(Capability.EMBED, "/v1/embeddings")
        client = self.client
        assert isinstance(client, TaskClient)

        def work(cancel: threading.Event, emit: Callable[[str], None]) -> object:
            vectors: list[np.ndarray] = []
            tokens = 0
            with self._serving(), self._using():
                for start in range(0, len(request.texts), EMBED_BATCH):
                    if cancel.is_set():
                        return None  # nobody waits for the answer any more
                    batch = request.texts[start:start + EMBED_BATCH]
                    vectors.append(client.embed(batch))
                    tokens += sum(len(client.tokens(text)) for text in batch)
            return np.concatenate(vectors), tokens

        return self.lane.submit(work)

    def _engine(self) -> EngineClient:
        assert not isinstance(self.client, TaskClient)
        return self.client

    def _generating(self, request: GenerationRequest, start: Callable[[threading.Event], Generation]) -> Work:
        """Work that streams a generation's pieces and returns its stats; a stop sequence ends
        it (its text not sent) with the finish reason "stop"."""

        def work(cancel: threading.Event, emit: Callable[[str], None]) -> object:
            scanner = StopScanner(request.stop)
            sent: list[str] = []

            def send(text: str) -> None:
                sent.append(text)
                emit(text)

            with self._serving():
                generation = start(cancel)  # waits for the engine when it is shared with the window
                with self._using():
                    for piece in generation:
                        if scanner.stopped:
                            continue  # stopping: the model ends within a token
                        if text := scanner.feed(piece):
                            send(text)
                        if scanner.stopped:
                            cancel.set()
                if text := scanner.flush():
                    send(text)
                stats = generation.stats
                if scanner.stopped:
                    stats.finish_reason = FinishReason.DONE
                self._answered(request, "".join(sent), stats)
                return stats

        return work

    @contextmanager
    def _serving(self) -> Iterator[None]:
        """Around a model call: a slmchat error becomes its API answer, and a dead process is
        handed to `gone`."""
        try:
            yield
        except SlmchatError as error:
            if not self.client.alive:
                self._gone()
            raise from_slmchat_error(error) from error

    @contextmanager
    def _using(self) -> Iterator[None]:
        """While the model works for a request (not while it waits for its turn)."""
        self._in_use(True)
        try:
            yield
        finally:
            self._in_use(False)

    def revive(self) -> None:
        """Load the model again (its process crashed, hung or ran out of memory)."""
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
            loaded.append(ServedModel.load(choice, n_threads=n_threads, paths=paths, max_waiting=max_waiting))
    except BaseException:
        for model in loaded:
            model.close()
        raise
    return ServedModels(loaded)
