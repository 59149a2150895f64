"""The chat engine in its own process: `EngineClient` has `Engine`'s interface across the boundary.

Built on process/parent.py's one mechanism (crash, hang and memory safeguards). A reply cut short
(the process died or was killed) keeps its text as INTERRUPTED; a crash in the first reply with
llama.cpp's extra buffer types on is retried once without them (a llama.cpp bug on AMX CPUs).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from slmchat.core.engine.kv_state import DEFAULT_CAP_BYTES, forget_everywhere
from slmchat.core.errors import SlmchatError
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    Generation,
    GenerationSettings,
    GenerationStats,
)
from slmchat.core.process.child import RunnerSpec
from slmchat.core.process.parent import (
    ChildGone,
    ModelProcess,
    ProcessLimits,
    request_ids,
)
from slmchat.paths import Paths

__all__ = ["EngineClient", "ProcessLimits", "engine_spec"]

log = logging.getLogger(__name__)


def engine_spec(config: EngineConfig, paths: Paths, kv_cap_bytes: int = DEFAULT_CAP_BYTES) -> RunnerSpec:
    """The chat engine, with its conversations' KV states under `paths.kv_states`."""
    return RunnerSpec("slmchat.core.engine.engine:Engine", (config,),
                      {"kv_states": paths.kv_states, "kv_cap_bytes": kv_cap_bytes},
                      label=Path(config.model_path).stem, load_timeout_s=config.load_timeout_s)


class EngineClient(ModelProcess):
    """A chat model loaded in its own process, with the interface of `Engine`.

    Blocks until the model is loaded (or fails with the engine's typed error, EngineHung when
    the load exceeds `config.load_timeout_s`, EngineCrashed when llama.cpp kills the process).
    Saved conversation states live in `paths.kv_states`, at most `kv_cap_bytes` of them.
    """

    def __init__(self, config: EngineConfig, *, paths: Paths | None = None,
                 limits: ProcessLimits | None = None, kv_cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        self.config = config
        self._active: tuple[int, Generation] | None = None
        self._session: str | None = None
        paths = paths or Paths.default()
        super().__init__(engine_spec(config, paths, kv_cap_bytes), paths=paths, limits=limits)

    def _launch(self, spec: RunnerSpec) -> None:
        self._served = False  # no piece yet from this process: a crash now may be the AMX bug
        super()._launch(spec)
        self.info = self.described["info"]
        log.info("engine process %s loaded %s (%s, %d threads, extra bufts %s)", self.pid,
                 self.info.name, self.info.backend, self.info.n_threads,
                 self.info.extra.get("use_extra_bufts"))

    # --- generations --------------------------------------------------------------------------
    def stream_chat(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None, *, session: str | None = None) -> Generation:
        """As `Engine.stream_chat`, across the process boundary: `session` names the
        conversation, whose KV state is saved and restored on disk by the engine."""
        messages = [ChatMessage(m.role, m.content) for m in messages]
        generation = self._request("stream_chat", messages, settings, cancel, {"session": session})
        self._session = session
        return generation

    def complete(self, text: str, settings: GenerationSettings | None = None,
                 cancel: threading.Event | None = None) -> Generation:
        """As `Engine.complete`, across the process boundary."""
        generation = self._request("complete", text, settings, cancel, {})
        self._session = None
        return generation

    # --- conversations' states on disk ----------------------------------------------------------
    @property
    def session(self) -> str | None:
        """The conversation of the last request (None: unnamed, or a text completion)."""
        return self._session

    def save_session(self) -> bool:
        """Write the current conversation's KV state to disk now (as `Engine.save_session`).

        Call it from the thread that runs the replies, between them: it stops an unfinished
        reply first. False when there was nothing new to save. `close()` calls it.
        """
        return bool(self.call("save_session", timeout_s=self._limits.save_timeout_s))

    def forget_session(self, key: str) -> None:
        """Delete every saved KV state of conversation `key` (it was deleted for good).

        The files go at once, from this process; the engine, if it holds that conversation,
        stops owning it after its current reply, so it never writes it back. Works without a
        loaded model too: see `kv_state.forget_everywhere`.
        """
        forget_everywhere(self._paths.kv_states, key)
        if key == self._session:
            self._session = None
        self.notify("forget_session", key)

    def _abandon_stream(self) -> None:
        if self._active is not None and not self._active[1].finished:
            self._tell(("cancel", self._active[0]))  # abandoned: its late pieces are dropped

    def _request(self, method: str, payload: Any, settings: GenerationSettings | None,
                 cancel: threading.Event | None, kwargs: dict[str, Any]) -> Generation:
        self._abandon_stream()
        request = ("stream", next(request_ids), method, (payload, settings or GenerationSettings()), kwargs)
        cancel = cancel or threading.Event()
        self._cancel = cancel
        stats = self._send_and_start(request)
        generation = Generation(self._pieces(request, cancel, stats), stats)
        self._active = (request[1], generation)
        return generation

    def _send_and_start(self, request: tuple) -> GenerationStats:
        """Send a request and wait until the child has rendered the prompt (or refused it)."""
        self._send(request)
        return self._await_answer(request[1], time.monotonic() + self._limits.start_timeout_s, "start")

    def _pieces(self, request: tuple, cancel: threading.Event, stats: GenerationStats) -> Iterator[str]:
        request_id = request[1]
        deadline = time.monotonic() + self._limits.prefill_timeout_s
        phase = "prefill"
        asked_to_stop_at: float | None = None
        try:
            while not self._closing:
                if cancel.is_set() and asked_to_stop_at is None:
                    asked_to_stop_at = time.monotonic()
                    self._tell(("cancel", request_id))
                    deadline = min(deadline, asked_to_stop_at + self._limits.cancel_grace_s)
                try:
                    message = self._receive(deadline, phase)
                except ChildGone as gone:
                    if asked_to_stop_at is None and self._retry_without_extra_bufts(gone, request):
                        deadline = time.monotonic() + self._limits.prefill_timeout_s
                        continue
                    stats.finish_reason = FinishReason.INTERRUPTED
                    stats.error = str(gone.error)
                    if asked_to_stop_at is not None or self._closing:
                        return  # the user stopped it, or the app is closing: nothing to report
                    raise gone.error from None
                if message is None or message[1] != request_id:
                    continue  # nothing yet, or a late message of an earlier reply
                kind, _, body = message
                if kind == "piece":
                    self._served = True
                    phase = "decode"
                    if asked_to_stop_at is None:
                        deadline = time.monotonic() + self._limits.silence_timeout_s
                    yield body
                elif kind == "end":
                    for field in dataclasses.fields(GenerationStats):
                        setattr(stats, field.name, getattr(body, field.name))
                    return
                elif kind == "failed":
                    stats.finish_reason, stats.error = FinishReason.ERROR, str(body)
                    raise body
            stats.finish_reason = FinishReason.INTERRUPTED  # closed while replying
        except GeneratorExit:  # the caller stopped iterating: stop the child's reply too
            cancel.set()
            self._drain(request_id)
            stats.finish_reason = FinishReason.STOPPED
            raise
        finally:
            if self._cancel is cancel:
                self._cancel = None

    def _drain(self, request_id: int) -> None:
        """After a Stop, wait (briefly) for the child to finish the reply, else kill it."""
        if not self.alive:
            return
        self._tell(("cancel", request_id))
        deadline = time.monotonic() + self._limits.cancel_grace_s
        try:
            while True:
                message = self._receive(deadline, "decode")
                if message is not None and message[1] == request_id and message[0] in ("end", "failed"):
                    return
        except ChildGone:
            return

    def _retry_without_extra_bufts(self, gone: ChildGone, request: tuple) -> bool:
        """llama.cpp's AMX bug: on AMX-like crashes in the first decode, reload once without
        extra buffer types and replay the request. Only when the setting is automatic."""
        config = self._spec.args[0]
        if (not gone.by_signal or self._served or config.use_extra_bufts is not None
                or self.info.extra.get("use_extra_bufts") != "on"):
            return False
        log.warning("engine crashed in its first reply with extra buffer types on; retrying without")
        try:
            retry = dataclasses.replace(config, use_extra_bufts=False)
            self._launch(dataclasses.replace(self._spec, args=(retry,)))
            self._send_and_start(request)
        except SlmchatError:
            log.exception("retry without extra buffer types failed")
            return False
        return True

    def close(self) -> None:
        """Save the conversation's KV state (bounded by `save_timeout_s`), then end the process.

        While a reply still streams to another thread, that thread owns the pipe: the engine
        then saves on its own as it closes, within the close grace.
        """
        streaming = self._active is not None and not self._active[1].finished
        if self.alive and not self._closing and self._session is not None and not streaming:
            try:
                self.save_session()
            except SlmchatError as error:  # a state is only a cache: closing goes on
                log.warning("could not save the conversation's state before closing: %s", error)
        super().close()
