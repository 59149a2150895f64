"""One real engine process shared by two callers (the window's chat and the API's lane): their
replies take turns in the order asked and each is whole, as if it had the model alone; a caller
stopped while it waits leaves at once; closing stops the running reply before the process ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.core.errors import EngineCrashed
from slmchat.core.generation import ChatMessage, EngineConfig, FinishReason, GenerationSettings, Role
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.serve.turns import TakingTurns
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
STORY = [ChatMessage(Role.USER, "Tell me a long story about a lighthouse keeper.")]
CAPITAL = [ChatMessage(Role.USER, "What is the capital of France?")]
GREEDY = GenerationSettings(max_tokens=40, temperature=0)


@pytest.fixture(scope="module")
def shared(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TakingTurns]:
    engine = TakingTurns(EngineClient(EngineConfig(smollm2_path, n_ctx=512, n_threads=1),
                                      paths=Paths.at(tmp_path_factory.mktemp("turns-home"))))
    yield engine
    engine.close()


def test_two_callers_at_once_each_get_the_whole_reply_they_get_alone_one_after_the_other(shared) -> None:
    alone = {name: shared.stream_chat(messages, GREEDY).read()
             for name, messages in (("story", STORY), ("capital", CAPITAL))}
    together: dict[str, str] = {}
    spans: dict[str, tuple[float, float]] = {}

    def ask(name: str, messages: list[ChatMessage]) -> None:
        generation = shared.stream_chat(messages, GREEDY)
        next(generation)
        began = time.monotonic()
        together[name] = generation.read()  # the whole text, the first piece included
        spans[name] = (began, time.monotonic())

    callers = [threading.Thread(target=ask, args=("story", STORY))]
    callers[0].start()
    time.sleep(0.3)  # the story has the engine
    callers.append(threading.Thread(target=ask, args=("capital", CAPITAL)))
    callers[1].start()
    for caller in callers:
        caller.join(120)
    assert together == alone
    assert spans["story"][1] <= spans["capital"][0], "the second reply began before the first had ended"


def test_a_caller_stopped_while_it_waits_leaves_at_once_with_nothing_and_the_running_reply_goes_on(shared) -> None:
    running = shared.stream_chat(STORY, GREEDY)
    next(running)
    stop = threading.Event()
    waited: dict[str, object] = {}

    def wait() -> None:
        generation = shared.stream_chat(CAPITAL, GREEDY, stop)
        waited["text"], waited["reason"] = generation.read(), generation.stats.finish_reason

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)
    assert waiter.is_alive(), "it did not wait for its turn"
    stop.set()
    waiter.join(2)
    assert not waiter.is_alive() and waited == {"text": "", "reason": FinishReason.STOPPED}
    running.read()
    assert running.stats.finish_reason is FinishReason.LENGTH


def test_closing_stops_the_running_reply_and_refuses_the_waiting_one(smollm2_path, tmp_path) -> None:
    engine = TakingTurns(EngineClient(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), paths=Paths.at(tmp_path)))
    running = engine.stream_chat(STORY, GenerationSettings(max_tokens=400, temperature=0))
    next(running)
    outcome: dict[str, object] = {}

    def read_on() -> None:
        running.read()
        outcome["running"] = running.stats.finish_reason

    def wait() -> None:
        try:
            engine.stream_chat(CAPITAL, GREEDY)
        except EngineCrashed as error:
            outcome["waiting"] = str(error)

    threads = [threading.Thread(target=read_on), threading.Thread(target=wait)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    engine.close()
    for thread in threads:
        thread.join(10)
    assert time.monotonic() - started < 10
    assert outcome["running"] is FinishReason.STOPPED
    assert "another model was chosen" in str(outcome["waiting"])
    assert not engine.alive
