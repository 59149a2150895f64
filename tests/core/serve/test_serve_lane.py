"""A model's lane: one request at a time in order, a full queue refused with 429, a request
whose client left skipped, and the event loop never blocked by the work."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from slmchat.core.serve.api_error import ApiError
from slmchat.core.serve.lane import Lane


def test_requests_run_one_at_a_time_in_order_and_stream_their_pieces() -> None:
    lane = Lane("m", max_waiting=4)
    running = threading.Semaphore(1)
    order: list[int] = []

    def work_for(number: int):
        def work(cancel, emit):
            assert running.acquire(blocking=False), "two requests ran at once"
            try:
                order.append(number)
                for piece in ("a", "b"):
                    time.sleep(0.01)
                    emit(f"{number}{piece}")
                return number * 10
            finally:
                running.release()
        return work

    async def main():
        tickets = [lane.submit(work_for(n)) for n in range(3)]
        return [await ticket.result() for ticket in tickets]

    try:
        assert asyncio.run(main()) == [("0a0b", 0), ("1a1b", 10), ("2a2b", 20)]
        assert order == [0, 1, 2]
    finally:
        lane.close()


def test_past_the_running_one_and_max_waiting_a_request_is_refused_with_429_and_later_taken_again() -> None:
    lane = Lane("m", max_waiting=1)
    release = threading.Event()

    def blocked(cancel, emit):
        release.wait(10)
        return "done"

    async def main():
        first, second = lane.submit(blocked), lane.submit(blocked)
        with pytest.raises(ApiError) as refusal:
            lane.submit(blocked)
        assert refusal.value.status == 429 and refusal.value.headers["Retry-After"] == "1"
        release.set()
        await first.result(), await second.result()
        return await lane.submit(blocked).result()

    try:
        assert asyncio.run(main()) == ("", "done")
    finally:
        lane.close()


def test_a_waiting_request_whose_client_left_is_skipped_and_a_running_one_is_told_to_stop() -> None:
    lane = Lane("m", max_waiting=2)
    ran: list[str] = []

    def until_cancelled(cancel, emit):
        ran.append("long")
        assert cancel.wait(10)
        return "stopped"

    def never(cancel, emit):
        ran.append("skipped one ran")

    async def main():
        long, left = lane.submit(until_cancelled), lane.submit(never)
        left.cancel.set()  # its client went away while it waited
        await asyncio.sleep(0.05)
        long.cancel.set()
        return await long.result()

    try:
        assert asyncio.run(main()) == ("", "stopped")
        time.sleep(0.1)
        assert ran == ["long"]
    finally:
        lane.close()


def test_the_works_error_reaches_the_request() -> None:
    lane = Lane("m", max_waiting=1)

    def failing(cancel, emit):
        emit("partial")
        raise ApiError(500, "the model crashed")

    async def main():
        ticket = lane.submit(failing)
        with pytest.raises(ApiError, match="crashed"):
            await ticket.result()

    try:
        asyncio.run(main())
    finally:
        lane.close()
