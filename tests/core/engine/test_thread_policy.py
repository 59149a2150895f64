"""The decoding thread count follows the machine's load: every core while other programs leave
them idle, fewer while they keep cores busy (slmchat/core/engine/threads.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.core.engine import threads
from slmchat.core.engine.engine import Engine
from slmchat.core.engine.threads import CpuSample, DecodeThreads
from slmchat.core.generation import EngineConfig
from slmchat.core.llama_api import llama_cpp


def test_an_idle_machine_decodes_on_every_core_and_a_busy_one_on_the_cores_left_free() -> None:
    assert threads.threads_for(2, 0.0) == 2
    assert threads.threads_for(2, 0.2) == 2  # the window painting the reply
    assert threads.threads_for(2, 0.7) == 1  # another program on one core
    assert threads.threads_for(2, 2.0) == 1  # never fewer than one
    assert threads.threads_for(8, 3.1) == 5
    assert threads.threads_for(8, 0.0) == 8


def test_other_programs_cpu_is_the_machines_busy_time_minus_this_processs_own() -> None:
    before = CpuSample(at=10.0, busy=100.0, own=5.0)
    # 0.5 s: the machine was busy for 1.2 CPU-seconds, 0.7 of them this process's (its threads)
    after = CpuSample(at=10.5, busy=101.2, own=5.7)
    assert threads.cores_used_by_others(before, after) == pytest.approx(1.0)


def test_sampling_the_cpu_counts_this_processs_own_work() -> None:
    before = threads.sample_cpu()
    end = time.process_time() + 0.3
    while time.process_time() < end:  # 0.3 s of this process's own CPU
        pass
    after = threads.sample_cpu()
    assert after.own - before.own >= 0.25
    assert after.busy - before.busy >= after.own - before.own - 0.05  # the machine saw it too


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with Engine(EngineConfig(smollm2_path, n_ctx=512, n_threads=1)) as loaded:
        yield loaded


class Samples:
    """CPU samples the policy reads, one second apart, with `others` cores busy elsewhere."""

    def __init__(self) -> None:
        self.at, self.busy, self.others = 0.0, 0.0, 0.0

    def __call__(self) -> CpuSample:
        self.at += 1.0
        self.busy += self.others + 0.5  # plus half a core of this process's own decoding
        return CpuSample(self.at, self.busy, own=self.at * 0.5)


def test_llama_cpp_decodes_on_the_cores_other_programs_leave_free(engine: Engine) -> None:
    samples = Samples()
    policy = DecodeThreads(engine._ctx, cores=2, batch_threads=2, initial=1, adaptive=True, sample=samples)
    assert policy.look() == 2
    assert llama_cpp.llama_n_threads(engine._ctx) == 2  # llama.cpp's own count, not ours
    assert llama_cpp.llama_n_threads_batch(engine._ctx) == 2
    samples.others = 1.0  # a program keeps one core busy
    assert policy.look() == 1
    assert llama_cpp.llama_n_threads(engine._ctx) == 1
    samples.others = 0.0  # it ended
    policy.look()
    assert llama_cpp.llama_n_threads(engine._ctx) == 2


def test_the_count_is_reconsidered_only_every_interval_so_a_token_costs_a_clock_read(engine: Engine) -> None:
    samples = Samples()
    policy = DecodeThreads(engine._ctx, cores=2, batch_threads=2, initial=1, adaptive=True, sample=samples)
    policy.update()
    taken = samples.at
    for _ in range(1000):
        policy.update()
    assert samples.at == taken


def test_a_thread_count_the_user_chose_is_kept_whatever_the_load(engine: Engine) -> None:
    chosen = threads.decode_threads(engine._ctx, engine.config, engine.resolved)  # n_threads=1
    assert not chosen.adaptive
    llama_cpp.llama_set_n_threads(engine._ctx, 1, 1)
    assert chosen.update() == 1
    assert llama_cpp.llama_n_threads(engine._ctx) == 1
    automatic = EngineConfig(engine.config.model_path, n_ctx=512)
    assert threads.decode_threads(engine._ctx, automatic, engine.resolved).adaptive
