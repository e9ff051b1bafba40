"""Background responses (``background: true``): answered off the request that asked, kept from
their start, read while they run, cancelled, and a streamed one's events picked up again.

One :class:`BackgroundRuns` per process runs its replica's share. What other replicas need is
in the store: the response (``running`` while its replica says so, every
``background_stale_seconds / 10`` at most), a streamed one's events (written every
``background_poll_seconds``), and a cancel asked from elsewhere. A replica that stops
mid-answer leaves its responses running but silent; the first read past
``background_stale_seconds`` settles each as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import orjson

from podium.errors import PodiumError
from podium.responses.settings import ResponsesSettings
from podium.responses.store import Event, ResponseStore, StoredResponse
from podium.types import JSONObject

log = logging.getLogger("podium.responses.background")

# The events that end a streamed response, each carrying its final Response object.
FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def failed(response: JSONObject, code: str, message: str) -> JSONObject:
    return {**response, "status": "failed", "error": {"code": code, "message": message}}


@dataclass(eq=False)
class BackgroundRun:
    """One background response this process runs."""

    response_id: str
    owner: str
    body: JSONObject  # the Response object as it started: status ``in_progress``
    events: list[Event] = field(default_factory=list)  # a streamed one's, by sequence number
    final: JSONObject | None = None  # the Response object it ended with
    stopping: str | None = None  # why Podium stops it: "cancelled", "deleted" or "shutdown"
    task: asyncio.Task[None] | None = None
    flushed: int = 0  # events written to the store
    done: bool = False
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _flushing: asyncio.Lock = field(default_factory=asyncio.Lock)

    def frame(self, kind: str, data: JSONObject) -> bytes:
        """A :class:`podium.api.responses.StreamWriter` frame: the event is kept for every
        client following this response, rather than sent to one."""
        self.events.append((kind, orjson.dumps(data)))
        if kind in FINAL_EVENTS:
            self.final = data["response"]
        self._notify()
        return b""

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def next_change(self) -> asyncio.Event:
        """Set at the next event, or at the end."""
        return self._changed


class BackgroundRuns:
    def __init__(
        self,
        store: ResponseStore,
        settings: ResponsesSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.runs: dict[str, BackgroundRun] = {}
        self.started = 0  # for /metrics
        self._clock = clock
        self._writer: asyncio.Task[None] | None = None
        self._beat_every = min(
            settings.background_poll_seconds * 5, settings.background_stale_seconds / 10
        )

    # -- this replica's runs ---------------------------------------------------------------------

    def ensure_room(self) -> None:
        """A 429 when this process runs as many as it may."""
        if len(self.runs) >= self.settings.max_background:
            raise PodiumError(
                "rate_limit",
                f"{len(self.runs)} background responses are running on this gateway, the most "
                "it runs at once (responses.max_background); try again when one has finished.",
                code="too_many_background_responses",
            )

    def open(self, response_id: str, owner: str, body: JSONObject) -> BackgroundRun:
        run = self.runs[response_id] = BackgroundRun(response_id, owner, body)
        return run

    def discard(self, run: BackgroundRun) -> None:
        """A run that never started (its request was refused, or could not be kept)."""
        self.runs.pop(run.response_id, None)

    def launch(self, run: BackgroundRun, answer: Awaitable[JSONObject | None]) -> None:
        """Run ``answer`` (the final Response object, or None if it sent no final event) to its
        end, and keep how it ended."""
        self.started += 1
        run.task = asyncio.get_running_loop().create_task(self._run(run, answer))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _run(self, run: BackgroundRun, answer: Awaitable[JSONObject | None]) -> None:
        try:
            final = await answer
        except asyncio.CancelledError:
            final = self._stopped(run)
        except PodiumError as error:
            final = failed(run.body, error.code or error.kind, error.message)
        except Exception:
            log.exception("background response %s failed", run.response_id)
            final = failed(run.body, "server_error", "the gateway failed while answering")
        if final is None:
            final = run.final or failed(run.body, "server_error", "the answer ended early")
        await self._end(run, final)

    def _stopped(self, run: BackgroundRun) -> JSONObject:
        if run.stopping == "shutdown":
            return failed(
                run.body,
                "server_shutdown",
                "the gateway stopped before this background response finished",
            )
        return {**run.body, "status": "cancelled"}

    async def _end(self, run: BackgroundRun, final: JSONObject) -> None:
        run.final = final
        try:
            if run.stopping != "deleted":
                await self._flush(run)  # every event before the end: see follow()
                await self.store.finish(run.response_id, final)
        except Exception:
            log.exception("could not keep how background response %s ended", run.response_id)
        finally:
            run.done = True
            run._notify()
            self.runs.pop(run.response_id, None)

    async def _flush(self, run: BackgroundRun) -> None:
        async with run._flushing:
            pending = run.events[run.flushed :]
            if pending:
                await self.store.add_events(run.response_id, run.flushed, pending)
                run.flushed += len(pending)

    async def _write(self) -> None:
        """While this process runs any: write their new events, say they still run, and stop
        those cancelled or deleted from another replica."""
        beaten = self._clock()
        try:
            while self.runs:
                await asyncio.sleep(self.settings.background_poll_seconds)
                for run in list(self.runs.values()):
                    try:
                        await self._flush(run)
                    except Exception:
                        log.exception("could not write events of %s", run.response_id)
                if self._clock() - beaten < self._beat_every:
                    continue
                beaten = self._clock()
                try:
                    cancel, gone = await self.store.beat(list(self.runs))
                except Exception:
                    log.exception("could not say background responses still run")
                    continue
                stops = {**dict.fromkeys(cancel, "cancelled"), **dict.fromkeys(gone, "deleted")}
                for response_id, why in stops.items():
                    stopped = self.runs.get(response_id)
                    if stopped is not None and stopped.task is not None and not stopped.done:
                        stopped.stopping = why
                        stopped.task.cancel()
        finally:
            self._writer = None

    # -- any replica's -------------------------------------------------------------------------

    async def current(self, owner: str, stored: StoredResponse) -> StoredResponse:
        """``stored`` as it stands: a running one whose replica went silent, settled as failed."""
        if not stored.running or stored.response_id in self.runs:
            return stored
        assert stored.heartbeat_at is not None
        silent_since = self._clock() - self.settings.background_stale_seconds
        if stored.heartbeat_at >= silent_since:
            return stored
        final = failed(
            stored.response,
            "server_error",
            "the gateway replica running this background response stopped before it finished",
        )
        if await self.store.settle_stale(stored.response_id, final, silent_since):
            return StoredResponse(
                stored.response_id,
                stored.previous_response_id,
                stored.input_items,
                final,
                None,
                stored.streamed,
                self.store.events_until(),
            )
        again = await self.store.get(owner, stored.response_id)
        return again or stored

    async def follow(self, owner: str, response_id: str, after: int) -> AsyncIterator[Event]:
        """A streamed background response's events after sequence number ``after``, as they
        come, until its last."""
        run = self.runs.get(response_id)
        if run is not None:
            index = after + 1
            while True:
                change = run.next_change()  # taken before reading: no event slips between
                while index < len(run.events):
                    yield run.events[index]
                    index += 1
                if run.done:
                    return
                await change.wait()
        while True:
            # The state first, then the events: a replica writes every event before the end,
            # so a response read as ended has all its events written.
            now = await self.store.get(owner, response_id)
            if now is None:
                return  # deleted meanwhile
            for sequence, event in await self.store.events_after(response_id, after):
                yield event
                after = sequence
            now = await self.current(owner, now)
            if not now.running:
                return
            await asyncio.sleep(self.settings.background_poll_seconds)

    async def cancel(self, owner: str, stored: StoredResponse) -> JSONObject:
        """Stop a running background response (here or on another replica); its Response
        object as it ended. One that had ended already is returned as it is."""
        run = self.runs.get(stored.response_id)
        if run is not None and run.owner == owner:
            if run.task is not None and not run.done:
                run.stopping = "cancelled"
                run.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(run.task)
            if not run.done:  # cancelled before it began: nothing caught it
                await self._end(run, self._stopped(run))
            assert run.final is not None
            return run.final
        if not await self.store.request_cancel(owner, stored.response_id):
            now = await self.store.get(owner, stored.response_id)
            return (now or stored).response
        while True:  # its replica stops it at its next word, or is silent and settled
            await asyncio.sleep(self.settings.background_poll_seconds)
            now = await self.store.get(owner, stored.response_id)
            if now is None:
                return {**stored.response, "status": "cancelled"}
            now = await self.current(owner, now)
            if not now.running:
                return now.response

    async def close(self) -> None:
        """Let running ones finish for ``background_shutdown_seconds``, then stop the rest."""
        tasks = [run.task for run in self.runs.values() if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.settings.background_shutdown_seconds)
        for run in list(self.runs.values()):
            if run.task is not None and not run.task.done():
                run.stopping = "shutdown"
                run.task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for run in list(self.runs.values()):  # cancelled before they began
            await self._end(run, self._stopped(run))
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
