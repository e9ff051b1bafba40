import asyncio

import pytest

from podium.single_flight import SingleFlight


async def test_callers_that_ask_while_it_runs_share_one_run() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    runs = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal runs
        runs += 1
        await gate.wait()
        return runs

    callers = [asyncio.create_task(flight.run("pdf", work)) for _ in range(3)]
    await asyncio.sleep(0)
    assert flight.running("pdf") and not flight.running("other")
    gate.set()
    assert await asyncio.gather(*callers) == [1, 1, 1]
    assert not flight.running("pdf")
    assert await flight.run("pdf", work) == 2  # done: the next caller starts it again


async def test_a_caller_that_goes_away_leaves_the_run_to_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "read"

    leaving = asyncio.create_task(flight.run("pdf", work))
    staying = asyncio.create_task(flight.run("pdf", work))
    await asyncio.sleep(0)
    leaving.cancel()
    gate.set()
    assert await staying == "read"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_failure_reaches_every_caller_and_is_not_kept() -> None:
    flight: SingleFlight[str, str] = SingleFlight()

    async def broken() -> str:
        await asyncio.sleep(0)
        raise ValueError("unreadable")

    results = await asyncio.gather(
        flight.run("pdf", broken), flight.run("pdf", broken), return_exceptions=True
    )
    assert [type(result) for result in results] == [ValueError, ValueError]
    assert not flight.running("pdf")


async def test_closing_cancels_what_is_running() -> None:
    flight: SingleFlight[str, bool] = SingleFlight()
    caller = asyncio.create_task(flight.run("cache", asyncio.Event().wait))
    await asyncio.sleep(0)
    await flight.aclose()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not flight.running("cache")
