"""How many threads decode a reply: every core while the rest of the machine is idle, fewer while
other programs keep cores busy.

llama.cpp's threads meet at a barrier after every step of a token (an OpenMP `omp barrier` in
the CPU build llama-cpp-python ships), so one thread pushed off its core holds up all the others:
decoding on every core is fastest on an idle machine and collapses as soon as another program
keeps one core busy (the figures are in `benchmarks/decode_under_load.py`'s output and
docs/BENCHMARKS.md). So the engine does not fix the count at load: before each token it calls
`DecodeThreads.update()`, which at most every `INTERVAL_S` looks at how much CPU time the other
programs used since its last look (the whole machine's busy time minus this process's own) and
gives llama.cpp (`llama_set_n_threads`) the cores they left free. A program that starts during a
reply costs at most one interval of slower decoding; one that ends gives its core back as fast.

The OpenMP settings that make a thread waiting at that barrier give its core up quickly instead
of spinning are process/parent.py's (they must be in the environment before libgomp loads).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import psutil

from slmchat.core.engine.backend import Resolved
from slmchat.core.generation import EngineConfig
from slmchat.core.llama_api import llama_cpp

# How often the count is reconsidered while decoding: a few dozen tokens, and long enough for the
# kernel's CPU accounting (10 ms ticks) to be exact within a few percent.
INTERVAL_S = 0.2
# psutil's Linux fields that are not work: `guest` time is already counted in `user`.
_NOT_BUSY = frozenset({"idle", "iowait", "guest", "guest_nice"})


class CpuSample(NamedTuple):
    """CPU seconds used so far, by every program and by this process, at one moment."""

    at: float  # time.monotonic()
    busy: float  # the whole machine's non-idle CPU seconds since boot
    own: float  # this process's CPU seconds (all its threads: llama.cpp's too)


def sample_cpu() -> CpuSample:
    """The CPU seconds used so far (psutil: /proc/stat on Linux, the kernel's counters elsewhere)."""
    machine = psutil.cpu_times()._asdict()
    own = psutil.Process().cpu_times()
    return CpuSample(time.monotonic(),
                     sum(seconds for name, seconds in machine.items() if name not in _NOT_BUSY),
                     own.user + own.system)


def cores_used_by_others(before: CpuSample, after: CpuSample) -> float:
    """How many cores the other programs kept busy between two samples, on average."""
    elapsed = after.at - before.at
    if elapsed <= 0:
        return 0.0
    return max(0.0, ((after.busy - before.busy) - (after.own - before.own)) / elapsed)


def threads_for(cores: int, busy_elsewhere: float) -> int:
    """The decoding threads for `cores` cores of which others keep `busy_elsewhere` busy: the
    cores left free, a core that is more than half free counting as free, at least one."""
    return max(1, min(cores, math.floor(cores - busy_elsewhere + 0.5)))


class DecodeThreads:
    """The decoding thread count of one llama.cpp context, following the machine's load.

    `cores` is the most it uses (every physical core: the prompt's thread count); `adaptive`
    False keeps the count chosen at load (the user set one, or a GPU does the work).
    """

    def __init__(self, ctx: Any, cores: int, batch_threads: int, initial: int, *, adaptive: bool,
                 sample: Callable[[], CpuSample] = sample_cpu) -> None:
        self._ctx = ctx
        self.cores = cores
        self._batch_threads = batch_threads
        self.current = initial
        self.adaptive = adaptive
        self._sample = sample
        self._last = sample() if adaptive else None
        self._next_look = 0.0  # the first token looks at once

    def update(self) -> int:
        """Before a token: every INTERVAL_S, `look()`; returns the count in use. Costs one clock
        read between looks."""
        if self.adaptive and time.monotonic() >= self._next_look:
            self.look()
        return self.current

    def look(self) -> int:
        """Set the count to the cores other programs left free since the last look."""
        now = self._sample()
        wanted = threads_for(self.cores, cores_used_by_others(self._last, now))
        self._last, self._next_look = now, time.monotonic() + INTERVAL_S
        if wanted != self.current:
            llama_cpp.llama_set_n_threads(self._ctx, wanted, self._batch_threads)
            self.current = wanted
        return self.current


def decode_threads(ctx: Any, config: EngineConfig, resolved: Resolved) -> DecodeThreads:
    """The engine's policy for `ctx`: adaptive on the CPU unless the user chose a thread count."""
    return DecodeThreads(ctx, resolved.n_threads_batch, resolved.n_threads_batch, resolved.n_threads,
                         adaptive=config.n_threads is None and resolved.backend == "CPU")
