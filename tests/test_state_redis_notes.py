"""Providers' notes in Redis: kept for their lifetime, and a Redis that is down costs nothing
but the sharing."""

from __future__ import annotations

import asyncio
import logging

import pytest

from podium.shared_notes import MemoryNotes, NoteBoard
from podium.state.redis_notes import RedisNotes
from tests.shared_servers import REDIS_URL, drop_redis_prefix, free_port, needs_redis, unique


@needs_redis
async def test_a_note_is_read_back_until_it_lapses() -> None:
    prefix = unique("podium_notes") + ":"
    notes = RedisNotes(REDIS_URL, prefix=prefix)
    try:
        await notes.write("gemini-cache:gem:abc", '{"name": "cachedContents/1"}', 0.3)
        assert await notes.read("gemini-cache:gem:abc") == '{"name": "cachedContents/1"}'
        assert await notes.read("gemini-cache:gem:other") is None
        await asyncio.sleep(0.4)
        assert await notes.read("gemini-cache:gem:abc") is None
    finally:
        await notes.aclose()
        await drop_redis_prefix(prefix)


async def test_an_unreachable_redis_reads_nothing_says_so_once_and_rests(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notes = RedisNotes(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, retry_after=60)
    try:
        with caplog.at_level(logging.WARNING, logger="podium.notes"):
            await notes.write("key", "value", 10)
            assert await notes.read("key") is None
            assert await notes.read("key") is None
    finally:
        await notes.aclose()
    assert notes.cooldown.errors == 1  # after the first failure it is left alone
    assert len(caplog.records) == 1 and "each process keeps its own" in caplog.text


async def test_a_board_without_a_store_shares_nothing() -> None:
    board = NoteBoard()
    await board.write("key", "value", 10)
    assert await board.read("key") is None
    board.store = MemoryNotes()
    await board.write("key", "value", 10)
    await board.write("never", "kept", 0)
    assert await board.read("key") == "value"
    assert await board.read("never") is None


@needs_redis
async def test_a_claim_is_one_replicas_until_it_lapses() -> None:
    prefix = unique("podium_notes") + ":"
    one, two = RedisNotes(REDIS_URL, prefix=prefix), RedisNotes(REDIS_URL, prefix=prefix)
    try:
        claims = await asyncio.gather(*(notes.claim("making", 0.3) for notes in (one, two) * 4))
        assert sorted(claims) == [False] * 7 + [True]
        await asyncio.sleep(0.4)  # its holder died: the claim lapses
        assert await two.claim("making", 10)
        assert not await one.claim("making", 10)
        await two.release("making")  # its work done: the next may take it at once
        assert await one.claim("making", 10)
    finally:
        await one.aclose()
        await two.aclose()
        await drop_redis_prefix(prefix)


async def test_without_a_store_every_claim_is_granted() -> None:
    down = RedisNotes(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2, retry_after=60)
    try:
        assert await down.claim("making", 10) and await down.claim("making", 10)
        await down.release("making")
    finally:
        await down.aclose()
    board = NoteBoard()
    assert await board.claim("making", 10) and await board.claim("making", 10)


async def test_a_claim_in_memory_lapses_on_its_clock() -> None:
    now = [0.0]
    notes = MemoryNotes(clock=lambda: now[0])
    board = NoteBoard()
    board.store = notes
    assert await board.claim("making", 30)
    assert not await board.claim("making", 30)
    now[0] = 31.0
    assert await board.claim("making", 30)
    await board.release("making")
    assert await board.claim("making", 30)
