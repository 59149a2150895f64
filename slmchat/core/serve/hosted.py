"""The model loaded in slmchat's window, served to other apps from the window's own process.

No second copy of the model is loaded: the API uses the window's engine process, shared through
`TakingTurns`, so an API request waits behind the window's reply and the other way round. The
window says which engine is loaded (`host`) and when none is (`unhost`: loading another, or
none chosen); meanwhile requests get a 503 that says so. One lane serves whatever model is
hosted, so its queue limit holds across switches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from slmchat.core.generation import GenerationStats, ModelInfo
from slmchat.core.serve.api_error import SERVER_ERROR, ApiError
from slmchat.core.serve.lane import Lane
from slmchat.core.serve.served import DEFAULT_MAX_WAITING, ServedModel
from slmchat.core.serve.turns import TakingTurns
from slmchat.core.serve.validate import GenerationRequest
from slmchat.core.tasks.capabilities import Capability


class HostedModels:
    """`ServedModels`' interface over the window's one loaded model (or none).

    `in_use(True/False)` brackets each request the model works on, `answered(request, text,
    stats)` hears each generation that ended, and `gone(engine)` is called when a request found
    the engine's process dead; all run on the lane's thread.
    """

    def __init__(self, *, in_use: Callable[[bool], None], gone: Callable[[TakingTurns], None],
                 answered: Callable[[GenerationRequest, str, GenerationStats], None],
                 max_waiting: int = DEFAULT_MAX_WAITING) -> None:
        self._in_use = in_use
        self._gone = gone
        self._answered = answered
        self._lane = Lane("window", max_waiting)
        self._lock = threading.Lock()
        self._model: ServedModel | None = None

    def host(self, name: str, engine: TakingTurns, info: ModelInfo) -> None:
        """Serve `engine`'s model as `name` (the window's library id for it)."""
        try:
            created = int(info.path.stat().st_mtime)
        except OSError:
            created = 0
        kinds = {Capability.CHAT, Capability.COMPLETE} if info.is_chat else {Capability.COMPLETE}
        model = ServedModel(name, engine, frozenset(kinds), context=info.n_ctx, created=created,
                            lane=self._lane, gone=lambda: self._gone(engine), in_use=self._in_use,
                            answered=self._answered)
        with self._lock:
            self._model = model

    def unhost(self) -> None:
        with self._lock:
            self._model = None

    def __iter__(self) -> Iterator[ServedModel]:
        with self._lock:
            return iter([self._model] if self._model is not None else [])

    def get(self, name: str) -> ServedModel:
        with self._lock:
            model = self._model
        if model is None:
            raise ApiError(503, "slmchat has no model loaded right now. Choose one in slmchat's window, "
                           "then send the request again.", type=SERVER_ERROR, code="model_not_loaded",
                           headers={"Retry-After": "5"})
        if name != model.name:
            raise ApiError(404, f"The model \"{name}\" is not loaded in slmchat. Loaded: {model.name}.",
                           param="model", code="model_not_found")
        return model

    def close(self) -> None:
        """Stop serving: the running request is stopped, the waiting ones skipped. The engine
        stays the window's."""
        self.unhost()
        self._lane.close()
