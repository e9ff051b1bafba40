"""Carrying on a coroutine that was started by hand.

The request path drives some coroutines one step itself (``coroutine.send(None)``): most
routers and finish hooks finish without ever waiting, and a task or a timeout of their own
would cost more than they do. The few that do wait are carried on from where they stopped by
awaiting :class:`Resume`.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


class Resume(Generic[T]):
    """Awaiting this carries on ``coro``, which its first ``send(None)`` left waiting on
    ``pending``: every result, error and cancellation reaches it as if it had been awaited
    from the start."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, T], pending: Any) -> None:
        self._coro = coro
        self._pending = pending

    def __await__(self) -> Generator[Any, Any, T]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as error:  # cancellation (a timeout) reaches the coroutine
                try:
                    pending = coro.throw(error)
                except StopIteration as done:
                    return cast(T, done.value)
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return cast(T, done.value)


async def carry_on(coro: Coroutine[Any, Any, T], pending: Any) -> T:
    """:class:`Resume` as a coroutine, for ``create_task``."""
    return await Resume(coro, pending)
