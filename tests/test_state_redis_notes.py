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
