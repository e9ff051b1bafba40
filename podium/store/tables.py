"""What the tables beside the traces share: a store that runs one parameterised statement at a
time, and, for the tables of kept content (stored responses, batches, files), their settings,
the sealer their content goes through (podium/policy/sealing.py) and a clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from podium.policy.sealing import Sealer, Unsealed


@runtime_checkable
class SQLExecutor(Protocol):
    """A store that runs one parameterised statement (``?`` placeholders) and returns rows
    indexable by position: SQLiteStore, or any store that translates placeholders."""

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


Statement = tuple[str, tuple[Any, ...]]


@runtime_checkable
class SQLTogether(Protocol):
    """A store that also runs several statements in one transaction, in one trip to the
    database (both of Podium's stores do)."""

    async def execute_together(self, statements: Sequence[Statement]) -> None: ...


async def execute_together(db: SQLExecutor, statements: Sequence[Statement]) -> None:
    """``statements`` in one transaction where ``db`` can, else one after another."""
    if not statements:
        return  # a background response whose answer holds no item to index, say
    if len(statements) == 1:
        await db.execute(*statements[0])
        return
    if isinstance(db, SQLTogether):
        await db.execute_together(statements)
        return
    for sql, params in statements:
        await db.execute(sql, params)


SettingsT = TypeVar("SettingsT")


class SealedTables(Generic[SettingsT]):
    def __init__(
        self,
        db: SQLExecutor,
        settings: SettingsT,
        *,
        sealer: Sealer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.settings = settings
        self.sealer = sealer or Unsealed()
        self._clock = clock
