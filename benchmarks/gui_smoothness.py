"""The longest GUI-thread stall while a reply streams into a 500-message chat (goal: < 16 ms).

The real app (app.build_window over a temporary data folder, offscreen) with a conversation of
500 messages of Markdown (headings, lists, a code block and a table in every answer) in the real
store; the chat is opened as the sidebar opens it, then a message is sent through
ChatController.send and the reply streams in while a 5 ms heartbeat QTimer (PreciseTimer) runs
on the GUI thread. The gap between beats is how long the GUI thread could not respond; the
longest gap and the 99th percentile while the reply streams (first piece shown -> end) are
printed per reply, the wait before the first piece (send, prompt evaluation) apart, and, once,
the stall of opening the long chat. Beside each gap, the GUI thread's own CPU time in it tells
our code's work from waiting for a core. --profile adds cProfile's view of the GUI thread.

    .venv/bin/python benchmarks/gui_smoothness.py [--messages 500] [--replies 3] [--tokens 200] [--threads T]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

import common

HEARTBEAT_MS = 5
QUESTION = "Explain how to read a text file line by line in Python, with a short code example."


class Heartbeat:
    """A precise timer on the GUI thread; each gap between beats is time the thread could not answer.

    Beside each gap it records the GUI thread's own CPU time in it (time.thread_time): a long gap
    with little CPU means the thread was ready but had no core (the OS ran llama.cpp's threads),
    a long gap full of CPU means our code on the GUI thread was busy.
    """

    def __init__(self) -> None:
        from PySide6.QtCore import Qt, QTimer

        self.beats: list[tuple[float, float, float]] = []  # (time, gap ms, GUI-thread CPU ms in the gap)
        self._last = self._last_cpu = 0.0
        self._timer = QTimer()
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(HEARTBEAT_MS)
        self._timer.timeout.connect(self._beat)

    def _beat(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        self.beats.append((now, (now - self._last) * 1000, (cpu - self._last_cpu) * 1000))
        self._last, self._last_cpu = now, cpu

    def start(self) -> None:
        self.beats = []
        self._last, self._last_cpu = time.perf_counter(), time.thread_time()
        self._timer.start()

    def stop(self, since: float = 0.0) -> dict[str, float]:
        """The gaps ending after `since`: longest, p99, median, count >= 16 ms, and the CPU in them."""
        self._timer.stop()
        return gap_summary([beat for beat in self.beats if beat[0] > since])


def gap_summary(beats: list[tuple[float, float, float]]) -> dict[str, float]:
    if not beats:
        return {"beats": 0}
    gaps = [gap for _, gap, _ in beats]
    longest = max(range(len(gaps)), key=gaps.__getitem__)
    return {"max_ms": gaps[longest], "p99_ms": common.percentile(gaps, 99), "median_ms": common.median(gaps),
            "beats": len(gaps), "over_16_ms": sum(gap >= 16 for gap in gaps),
            "cpu_in_longest_ms": beats[longest][2], "max_cpu_ms": max(cpu for _, _, cpu in beats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--replies", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=200, help="max_tokens of each reply")
    common.add_threads_argument(parser)
    parser.add_argument("--profile", action="store_true", help="cProfile the GUI thread during the replies")
    common.add_common_arguments(parser, "gui_smoothness")
    args = parser.parse_args()

    from slmchat.core.generation import GenerationSettings

    facts = common.machine()
    common.print_machine(facts)
    filled: list[int] = []
    settings = GenerationSettings(max_tokens=args.tokens, seed=1)  # the app's sampling, repeatable
    with common.AppUnderTest(threads=args.threads, context_size=4096, generation=settings,
                             prepare=lambda store: filled.append(common.fill_long_conversation(store, args.messages))
                             ) as app:
        info = app.start_model()
        controller, heartbeat = app.controller, Heartbeat()
        heartbeat.start()
        started = time.perf_counter()
        controller.open_conversation(filled[0])
        opened_ms = (time.perf_counter() - started) * 1000
        _settle(0.5)
        opening = heartbeat.stop()
        shown = controller.chat_model.rowCount()
        size = app.window.size()
        print(f"model {info.path.name}, {info.n_threads} threads, n_ctx {info.n_ctx}; a chat of {shown} messages "
              f"shown in a {size.width()}x{size.height()} window; heartbeat every {HEARTBEAT_MS} ms")
        print(f"opening the chat: open_conversation {opened_ms:.0f} ms; longest stall {opening['max_ms']:.0f} ms")
        profiler = cProfile.Profile() if args.profile else None
        replies = []
        for number in range(args.replies):
            heartbeat.start()
            if profiler:
                profiler.enable()
            timing = app.reply(QUESTION, new_chat=False)
            if profiler:
                profiler.disable()
            beats = heartbeat.beats
            figures = heartbeat.stop(since=timing.arrivals[0])  # from the first piece shown: streaming
            figures["prefill"] = gap_summary([beat for beat in beats if beat[0] <= timing.arrivals[0]])
            figures.update(tokens=timing.completion_tokens, prompt_tokens=timing.prompt_tokens,
                           updates_shown=len(timing.arrivals), load_average=common.load_average())
            replies.append(figures)
            print(f"  reply {number + 1}: {timing.completion_tokens} tokens after a {timing.prompt_tokens}-token "
                  f"prompt, {len(timing.arrivals)} updates shown; GUI thread: longest stall "
                  f"{figures['max_ms']:.1f} ms (its own CPU in it {figures['cpu_in_longest_ms']:.1f} ms), p99 "
                  f"{figures['p99_ms']:.1f} ms, {figures['over_16_ms']} of {figures['beats']} gaps >= 16 ms; longest "
                  f"busy stretch {figures['max_cpu_ms']:.1f} ms CPU; load {common.fmt_load(common.load_average())}")
            prefill = figures["prefill"]
            if prefill["beats"]:
                print(f"    before the first piece (send, prompt evaluation): longest stall {prefill['max_ms']:.1f} ms "
                      f"(its own CPU {prefill['cpu_in_longest_ms']:.1f} ms), p99 {prefill['p99_ms']:.1f} ms")
    worst = max(reply["max_ms"] for reply in replies)
    p99 = common.median(reply["p99_ms"] for reply in replies)
    busy = max(reply["max_cpu_ms"] for reply in replies)
    print(f"longest stall over {args.replies} replies: {worst:.1f} ms; median p99 {p99:.1f} ms (goal < 16 ms); "
          f"the GUI thread's own longest busy stretch {busy:.1f} ms")
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
        print(text.getvalue())
    common.save_results(args.results, args.key, {
        "model": info.path.name, "threads": info.n_threads, "messages": shown, "heartbeat_ms": HEARTBEAT_MS,
        "open_ms": opened_ms, "opening": opening, "replies": replies, "max_ms": worst, "p99_ms": p99,
        "max_cpu_ms": busy,
        "goal_ms": 16, "machine": facts, "load_average_after": common.load_average(),
    })


def _settle(seconds: float) -> None:
    """Let the event loop run for `seconds` (layout, paint) with the heartbeat measuring it."""
    deadline = time.monotonic() + seconds
    common.spin_until(lambda: time.monotonic() >= deadline, seconds + 5)


if __name__ == "__main__":
    main()
