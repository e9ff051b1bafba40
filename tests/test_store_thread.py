"""The store's thread: calls run there one at a time, in order, and their results and errors
come back to the awaiting task as an executor's would."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from podium.store.thread import StoreThread


async def test_calls_run_on_one_thread_in_the_order_made() -> None:
    runner = StoreThread("podium-test")
    seen: list[tuple[int, str]] = []

    def call(number: int) -> int:
        seen.append((number, threading.current_thread().name))
        time.sleep(0.001 * (number % 3))  # later calls must still wait their turn
        return number * 10

    try:
        results = await asyncio.gather(*(runner.run(lambda n=n: call(n)) for n in range(20)))
    finally:
        runner.stop()
    assert results == [n * 10 for n in range(20)]
    assert seen == [(n, "podium-test") for n in range(20)]


async def test_an_error_reaches_the_caller_and_the_thread_goes_on() -> None:
    runner = StoreThread("podium-test")

    def fail() -> None:
        raise ValueError("no such table")

    try:
        with pytest.raises(ValueError, match="no such table"):
            await runner.run(fail)
        assert await runner.run(lambda: "still serving") == "still serving"
    finally:
        runner.stop()


async def test_a_call_cancelled_before_its_turn_does_not_run() -> None:
    runner = StoreThread("podium-test")
    release = threading.Event()
    ran: list[str] = []

    def block() -> None:
        release.wait(5)
        ran.append("first")

    try:
        first = asyncio.ensure_future(runner.run(block))
        second = asyncio.ensure_future(runner.run(lambda: ran.append("second")))
        await asyncio.sleep(0.01)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        release.set()
        await first
        assert await runner.run(lambda: "after") == "after"
    finally:
        runner.stop()
    assert ran == ["first"]


async def test_stop_lets_queued_calls_finish_and_refuses_new_ones() -> None:
    runner = StoreThread("podium-test")
    done: list[int] = []
    pending = [asyncio.ensure_future(runner.run(lambda n=n: done.append(n))) for n in range(5)]
    await asyncio.sleep(0)  # the calls are queued
    thread = runner._thread
    assert thread is not None and thread.daemon  # a store never closed lets the process exit
    runner.stop()
    assert done == [0, 1, 2, 3, 4]
    assert not thread.is_alive()
    await asyncio.gather(*pending)
    with pytest.raises(RuntimeError, match="stopped"):
        await runner.run(lambda: None)
