"""Work on a timer: it runs again and again, outlives a failed run, and stops when closed."""

from __future__ import annotations

import asyncio
import logging

import pytest

from podium.periodic import Periodic


async def test_work_runs_on_its_interval_outlives_failures_and_stops_when_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs: list[int] = []

    async def work() -> str | None:
        runs.append(len(runs))
        if len(runs) == 2:
            raise RuntimeError("the store is down")
        return "did something" if len(runs) == 3 else None

    timer = Periodic(work, 0.01, name="test sweep", first_delay=0.0)
    with caplog.at_level(logging.INFO, logger="podium.periodic"):
        timer.start()
        timer.start()  # a second start does not run it twice
        for _ in range(200):
            if len(runs) >= 4:
                break
            await asyncio.sleep(0.01)
        await timer.close()
    seen = len(runs)
    await asyncio.sleep(0.05)
    assert len(runs) == seen >= 4
    messages = [record.getMessage() for record in caplog.records]
    assert "test sweep failed; will try again" in messages
    assert "test sweep: did something" in messages
