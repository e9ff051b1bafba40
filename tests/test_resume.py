import asyncio

import pytest

from podium.resume import Resume, carry_on


async def waits_then_answers(gate: asyncio.Future[int], log: list[str]) -> int:
    log.append("started")
    try:
        value = await gate
    except asyncio.CancelledError:
        log.append("cancelled")
        raise
    return value * 2


async def test_a_coroutine_started_by_hand_gets_its_result_when_carried_on() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    log: list[str] = []
    coro = waits_then_answers(gate, log)
    pending = coro.send(None)
    assert log == ["started"]
    task = asyncio.create_task(carry_on(coro, pending))
    await asyncio.sleep(0)
    gate.set_result(21)
    assert await task == 42


async def test_errors_and_cancellations_reach_the_coroutine() -> None:
    loop = asyncio.get_running_loop()
    failing: asyncio.Future[int] = loop.create_future()
    coro = waits_then_answers(failing, [])
    resumed = asyncio.ensure_future(Resume(coro, coro.send(None)))
    await asyncio.sleep(0)
    failing.set_exception(ValueError("upstream broke"))
    with pytest.raises(ValueError, match="upstream broke"):
        await resumed

    log: list[str] = []
    waiting = waits_then_answers(loop.create_future(), log)
    task = asyncio.create_task(carry_on(waiting, waiting.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["started", "cancelled"]
