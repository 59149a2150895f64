"""The engine behind a process boundary: streaming, typed errors, crashes, hangs and Stop.

Crashes and hangs are real: the child is killed with SIGKILL, or frozen with SIGSTOP.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.core import errors
from slmchat.core.errors import (
    ContextFull,
    EngineCrashed,
    EngineHung,
    ModelFileDamaged,
    NotAGGUF,
    NotEnoughMemory,
)
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    GenerationSettings,
    Role,
)
from slmchat.core.process.engine_client import EngineClient, ProcessLimits
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
HELLO = [ChatMessage(Role.USER, "Tell me a long story about a lighthouse keeper.")]
LONG_REPLY = GenerationSettings(max_tokens=300, temperature=0)


def smollm2_config(path: Path, **overrides: object) -> EngineConfig:
    return EngineConfig(path, n_ctx=512, n_threads=1, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def client(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineClient]:
    paths = Paths.at(tmp_path_factory.mktemp("engine-home"))
    with EngineClient(smollm2_config(smollm2_path), paths=paths) as shared:
        yield shared


def fresh_client(path: Path, home: Path, **limits: float) -> EngineClient:
    return EngineClient(smollm2_config(path), paths=Paths.at(home), limits=ProcessLimits(**limits))


def test_reply_streams_across_the_boundary(client: EngineClient) -> None:
    arrivals: list[float] = []
    generation = client.stream_chat(HELLO, GenerationSettings(max_tokens=24, temperature=0))
    for _piece in generation:
        arrivals.append(time.monotonic())
    assert client.info.is_chat and client.info.template_source == "model"
    assert generation.stats.finish_reason in (FinishReason.LENGTH, FinishReason.DONE)
    assert generation.stats.completion_tokens > 5
    assert len(arrivals) > 5  # pieces come one by one, not as one block at the end
    assert generation.text


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the kernel's map of the child (Linux /proc)")
def test_the_engine_process_maps_llama_cpp_but_neither_numpy_nor_the_high_level_llama(client: EngineClient) -> None:
    """The child drives llama.cpp's C API only: the package's high-level `Llama` and numpy would
    cost it ~27 MB of RSS. Read from the kernel's map of the child, not from what we imported."""
    client.stream_chat(HELLO, GenerationSettings(max_tokens=4)).read()  # the child has done real work
    mapped = Path(f"/proc/{client.pid}/maps").read_text()
    assert "libllama" in mapped  # the check reads the right process
    assert "_multiarray_umath" not in mapped and "openblas" not in mapped  # numpy's extension and its BLAS


def test_turn_two_reuses_the_cache_in_the_child(client: EngineClient) -> None:
    history = [ChatMessage(Role.USER, "Name a fruit.")]
    first = client.stream_chat(history, GenerationSettings(max_tokens=8, temperature=0))
    first.read()
    history += [ChatMessage(Role.ASSISTANT, first.text), ChatMessage(Role.USER, "Another one?")]
    second = client.stream_chat(history, GenerationSettings(max_tokens=8, temperature=0))
    second.read()
    assert 0 < second.stats.prompt_evaluated < second.stats.prompt_tokens // 2


def test_typed_error_crosses_and_the_engine_stays_usable(client: EngineClient) -> None:
    with pytest.raises(ContextFull):
        client.stream_chat([ChatMessage(Role.USER, "sea " * 2000)])
    assert client.stream_chat(HELLO, GenerationSettings(max_tokens=4)).read()


def test_bad_file_gives_its_typed_error_from_the_child(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(NotAGGUF):
        EngineClient(EngineConfig(path), paths=Paths.at(tmp_path / "home"))


def test_load_failure_shows_llama_cpps_own_reason(smollm2_path: Path, tmp_path: Path) -> None:
    # Valid container, but a tensor llama.cpp requires is renamed: only llama.cpp notices.
    data = smollm2_path.read_bytes()
    at = data.index(b"output_norm.weight")
    path = tmp_path / "renamed-tensor.gguf"
    path.write_bytes(data[:at] + b"output_norx.weight" + data[at + 18:])
    with pytest.raises(ModelFileDamaged, match="output_norm.weight' not found"):
        EngineClient(EngineConfig(path, n_threads=1), paths=Paths.at(tmp_path / "home"))


def test_stop_from_another_thread_ends_the_reply_stopped(client: EngineClient) -> None:
    generation = client.stream_chat(HELLO, LONG_REPLY)
    next(generation)
    threading.Thread(target=client.cancel).start()
    generation.read()
    assert generation.stats.finish_reason is FinishReason.STOPPED
    assert generation.stats.completion_tokens < 300
    assert client.alive


def test_killed_child_leaves_the_reply_interrupted_with_its_text(smollm2_path: Path, tmp_path: Path) -> None:
    engine = fresh_client(smollm2_path, tmp_path)
    try:
        generation = engine.stream_chat(HELLO, LONG_REPLY)
        for count, _piece in enumerate(generation):
            if count == 3:
                os.kill(engine.pid, signal.SIGKILL)
                break
        text_before = generation.text
        with pytest.raises(EngineCrashed, match="SIGKILL"):
            for _piece in generation:
                pass
        assert generation.stats.finish_reason is FinishReason.INTERRUPTED
        assert generation.text.startswith(text_before) and text_before
        assert not engine.alive
        engine.reload()
        assert engine.stream_chat(HELLO, GenerationSettings(max_tokens=4)).read()
    finally:
        engine.close()


def test_unanswered_stop_kills_the_child_and_keeps_the_text(smollm2_path: Path, tmp_path: Path) -> None:
    engine = fresh_client(smollm2_path, tmp_path, cancel_grace_s=0.5)
    try:
        generation = engine.stream_chat(HELLO, LONG_REPLY)
        first = next(generation)
        os.kill(engine.pid, signal.SIGSTOP)  # a child frozen inside llama.cpp
        started = time.monotonic()
        engine.cancel()
        generation.read()
        assert time.monotonic() - started < 10
        assert generation.stats.finish_reason is FinishReason.INTERRUPTED
        assert generation.text.startswith(first)
        assert not engine.alive
    finally:
        engine.close()


def test_silent_child_is_reported_hung(smollm2_path: Path, tmp_path: Path) -> None:
    engine = fresh_client(smollm2_path, tmp_path, silence_timeout_s=1.0)
    try:
        generation = engine.stream_chat(HELLO, LONG_REPLY)
        next(generation)
        os.kill(engine.pid, signal.SIGSTOP)
        with pytest.raises(EngineHung):
            generation.read()
        assert generation.stats.finish_reason is FinishReason.INTERRUPTED
        assert not engine.alive
    finally:
        engine.close()


def test_load_over_its_time_budget_is_reported_hung(smollm2_path: Path, tmp_path: Path) -> None:
    config = EngineConfig(smollm2_path, n_threads=1, load_timeout_s=0.01)
    with pytest.raises(EngineHung, match="loading"):
        EngineClient(config, paths=Paths.at(tmp_path))


def test_memory_over_the_cap_stops_the_child(smollm2_path: Path, tmp_path: Path) -> None:
    engine: EngineClient | None = None
    with pytest.raises(NotEnoughMemory):  # while loading, or at the latest when asked to reply
        engine = fresh_client(smollm2_path, tmp_path, memory_cap_bytes=20 * 1024**2)
        engine.stream_chat(HELLO, GenerationSettings(max_tokens=4)).read()
    if engine is not None:
        assert not engine.alive
        engine.close()


def test_child_log_holds_llama_cpps_own_messages(client: EngineClient) -> None:
    text = client.log_path.read_text(encoding="utf-8", errors="replace")
    assert "llama_model_loader" in text or "print_info" in text


@pytest.mark.parametrize(
    "error_class",
    [cls for cls in vars(errors).values()
     if isinstance(cls, type) and issubclass(cls, errors.SlmchatError)],
)
def test_every_user_error_survives_the_pipe(error_class: type[errors.SlmchatError]) -> None:
    error = error_class("A sentence for the user.", detail="for the log")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is error_class
    assert (str(copy), copy.detail) == ("A sentence for the user.", "for the log")


def test_death_in_the_first_decode_retries_once_without_extra_buffer_types(
        smollm2_path: Path, tmp_path: Path) -> None:
    # llama.cpp's AMX bug crashes in the first multi-token batch; a SIGKILL right after
    # the prompt was accepted is the same death at the same moment.
    engine = fresh_client(smollm2_path, tmp_path)
    try:
        assert engine.info.extra["use_extra_bufts"] == "on"  # this CPU has no AMX
        first_pid = engine.pid
        long_prompt = [ChatMessage(Role.USER, "Summarise: " + "the sea is calm. " * 80)]
        generation = engine.stream_chat(long_prompt, GenerationSettings(max_tokens=8, temperature=0))
        os.kill(first_pid, signal.SIGKILL)  # during the ~400-token prompt evaluation
        assert generation.read()
        assert engine.pid != first_pid
        assert engine.info.extra["use_extra_bufts"] == "off"
    finally:
        engine.close()


# --- conversations' KV states on disk -------------------------------------------------------------
def test_a_conversation_reopened_in_a_fresh_process_evaluates_only_its_new_tokens(
        smollm2_path: Path, tmp_path: Path) -> None:
    paths = Paths.at(tmp_path)
    history = [ChatMessage(Role.USER, "Here are my notes on lighthouses. " * 25 + "Summarise them.")]
    short = GenerationSettings(max_tokens=12, temperature=0)
    with EngineClient(smollm2_config(smollm2_path), paths=paths) as first_process:
        first = first_process.stream_chat(history, short, session="conversation-7")
        first.read()
    assert first.stats.prompt_evaluated == first.stats.prompt_tokens > 200  # a cold prefill
    assert len(list(paths.kv_states.glob("*.kv"))) == 1  # closing saved the conversation

    history += [ChatMessage(Role.ASSISTANT, first.text), ChatMessage(Role.USER, "Shorter, please.")]
    with EngineClient(smollm2_config(smollm2_path), paths=paths) as second_process:
        second = second_process.stream_chat(history, short, session="conversation-7")
        second.read()
        elsewhere = second_process.stream_chat(history, short, session="another-conversation")
        elsewhere.read()  # the same prompt under a conversation with no saved state
    # Counts from llama.cpp's perf context in the child (n_p_eval).
    assert second.stats.prompt_reused >= first.stats.prompt_tokens
    assert second.stats.prompt_evaluated == second.stats.prompt_tokens - second.stats.prompt_reused < 40
    assert elsewhere.stats.prompt_reused == second.stats.prompt_tokens - 1  # the cache in memory serves it
    assert second.text  # the restored state answers


def test_deleting_a_conversation_deletes_its_saved_state(client: EngineClient) -> None:
    folder = client.paths.kv_states
    client.stream_chat(HELLO, GenerationSettings(max_tokens=4), session="to-delete").read()
    assert client.save_session()
    assert list(folder.glob("*.kv"))
    client.forget_session("to-delete")
    assert not list(folder.glob("*.kv"))
    client.stream_chat(HELLO, GenerationSettings(max_tokens=4), session="kept").read()
    assert client.save_session()  # leaving "to-delete" wrote nothing back: only "kept" is there
    assert len(list(folder.glob("*.kv"))) == 1
    client.forget_session("kept")
