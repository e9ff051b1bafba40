"""The batch store's pages: newest first, and batches created in the same instant are neither
skipped nor repeated at a page's edge, in either direction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from podium.batches.settings import BatchSettings
from podium.batches.store import BatchStore
from podium.store.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[BatchStore]:
    db = SQLiteStore(tmp_path / "podium.db")
    await db.open()
    instants = iter([100.0, 200.0, 200.0, 200.0, 200.0, 300.0])
    try:
        yield BatchStore(db, BatchSettings(), clock=lambda: next(instants, 300.0))
    finally:
        await db.close()


async def created(store: BatchStore) -> list[str]:
    ids = ["msgbatch_a", "msgbatch_d", "msgbatch_b", "msgbatch_e", "msgbatch_c", "msgbatch_f"]
    for batch_id in ids:
        await store.create(batch_id, "owner", "key", [("one", {"model": "m"})])
    # Newest first; ties in the creation instant ordered by id, descending.
    return ["msgbatch_f", "msgbatch_e", "msgbatch_d", "msgbatch_c", "msgbatch_b", "msgbatch_a"]


async def test_pages_forward_through_batches_created_in_one_instant(store: BatchStore) -> None:
    newest_first = await created(store)
    seen: list[str] = []
    after: str | None = None
    while True:
        page = [batch.batch_id for batch in await store.page("owner", 2, after=after)]
        if not page:
            break
        seen += page
        after = page[-1]
    assert seen == newest_first


async def test_pages_backward_through_batches_created_in_one_instant(store: BatchStore) -> None:
    newest_first = await created(store)
    seen: list[str] = []
    before = newest_first[-1]
    while True:
        page = [batch.batch_id for batch in await store.page("owner", 2, before=before)]
        if not page:
            break
        seen = page + seen
        before = page[0]
    assert seen == newest_first[:-1]


async def test_another_owners_batches_are_not_on_the_page(store: BatchStore) -> None:
    await created(store)
    assert await store.page("someone else", 10) == []
