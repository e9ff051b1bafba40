"""One thread for a blocking store: its calls run there one at a time, in the order they were
made, and the event loop awaits each result without blocking.

This is what ``loop.run_in_executor`` with a one-thread ``ThreadPoolExecutor`` does, minus its
bookkeeping: that path spends ~110k instructions a call in Python (a concurrent future with its
condition variable, an asyncio future chained to it, the pool's semaphore and locks), more than
SQLite spends writing a small batch of traces. Here a call is a tuple on a ``SimpleQueue`` and
one ``call_soon_threadsafe`` back.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


class StoreThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped = False

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the thread. A call cancelled before the thread reaches it does not run;
        one already running finishes there (its result is dropped), as with an executor."""
        if self._stopped:
            raise RuntimeError(f"{self.name} is stopped")
        if self._thread is None:
            # Daemon: a store never closed must not keep the process from exiting (the pool's
            # threads were joined at exit instead; the trace writer closes its store first).
            self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((fn, future, loop))
        return await future

    def stop(self) -> None:
        """Let the calls already queued run, then end the thread (waits for it)."""
        self._stopped = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._calls.put(None)
            thread.join()

    def _serve(self) -> None:
        calls = self._calls
        while (call := calls.get()) is not None:
            fn, future, loop = call
            if future.cancelled():  # a read of a flag: racing with a cancel only runs it anyway
                continue
            try:
                result = fn()
            except BaseException as error:  # handed to the caller, as an executor does
                _reply(loop, _fail, future, error)
            else:
                _reply(loop, _resolve, future, result)


def _reply(
    loop: asyncio.AbstractEventLoop,
    settle: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    try:
        loop.call_soon_threadsafe(settle, future, value)
    except RuntimeError:  # the loop closed while the call ran: nobody is waiting for it
        pass


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)
