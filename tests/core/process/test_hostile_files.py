"""Every hostile file, fed through the engine process: a typed error or a safe working model.

For each file from tests/hostile_gguf.py: loading it in an `EngineClient` gives the typed error
`check_gguf` promises, or (for the harmless ones) a model that answers; always within a bounded
time, with this process alive, the child gone after close, no template code run (marker files
absent) and no raw escape codes in anything shown to the user.
"""

from __future__ import annotations

import time
import unicodedata
from pathlib import Path

import hostile_gguf
import pytest
from hostile_gguf import Hostile

from slmchat.core.errors import NotAChatModel, SlmchatError
from slmchat.core.generation import ChatMessage, EngineConfig, GenerationSettings, Role
from slmchat.core.process.engine_client import EngineClient, ProcessLimits

pytestmark = pytest.mark.slow

BOUND_S = 120.0  # a load plus a short reply takes seconds; only a hang gets near this
LIMITS = ProcessLimits(start_timeout_s=30.0, prefill_timeout_s=60.0, silence_timeout_s=30.0)
SHORT = GenerationSettings(max_tokens=8, temperature=0.0, seed=1)


def shown_safely(text: str) -> bool:
    return not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


@pytest.mark.parametrize("make", hostile_gguf.ALL, ids=[f.__name__ for f in hostile_gguf.ALL])
def test_hostile_file_through_the_engine_process(make, smollm2_path: Path, tmp_path: Path) -> None:
    hostile: Hostile = make(smollm2_path, tmp_path, weights=True)
    config = EngineConfig(model_path=hostile.path, n_ctx=512, n_threads=2, load_timeout_s=60.0)
    start = time.monotonic()
    try:
        if hostile.error is not None:
            with pytest.raises(SlmchatError) as caught:
                EngineClient(config, limits=LIMITS).close()
            assert isinstance(caught.value, hostile.error), repr(caught.value)
            assert shown_safely(str(caught.value))
        else:
            client = EngineClient(config, limits=LIMITS)
            try:
                child = client.pid
                assert child is not None
                use_the_model(client, hostile)
            finally:
                client.close()
            assert not client.alive
    finally:
        hostile.path.unlink(missing_ok=True)  # ~100 MB each
    assert time.monotonic() - start < BOUND_S
    if hostile.marker is not None:
        assert not hostile.marker.exists(), "template code ran"


def use_the_model(client: EngineClient, hostile: Hostile) -> None:
    info = client.info
    assert shown_safely(info.name) and len(info.name) <= 200
    assert info.n_ctx <= 512  # explicit, whatever context length the file claims
    if hostile.template_refused:
        assert info.template_source != "model"
    if info.is_chat:
        reply = client.stream_chat([ChatMessage(Role.USER, "Say hi.")], SHORT)
        reply.read()
        assert reply.stats.completion_tokens > 0
    else:
        with pytest.raises(NotAChatModel):
            client.stream_chat([ChatMessage(Role.USER, "Say hi.")], SHORT).read()
        completion = client.complete("The capital of France is", SHORT)
        completion.read()
        assert completion.stats.completion_tokens > 0
