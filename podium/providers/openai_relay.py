"""An OpenAI-compatible stream relayed to an OpenAI client as it arrives.

The upstream's own event bytes go on unparsed. Podium looks inside only where it must: the
events before the first one with content (so a stream that breaks that early can still be
retried elsewhere), the usage event (kept for the end, where the ingress adds the cost), an
error event, and the end marker. A block of events that mentions none of these is forwarded
as it came, with the worker's name put in the ``model`` field (as a decoded answer has it).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson

from podium.errors import ProviderError
from podium.providers.http import EventSplitter, StreamBody, data_of, malformed_event
from podium.types import RelayMeter, Usage, WireStream, WireUsage


def _needs_look(events: bytes) -> bool:
    # A block mentioning none of these needs no look inside. Only a filter: a false match (an
    # answer that says "usage") just takes the exact path for that block.
    return b'"usage"' in events or b'"error"' in events or b"[DONE]" in events


def _has_content(chunk: dict[str, Any]) -> bool:
    """Does this chunk carry anything beyond the opening role (text, a tool call, a finish)?"""
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or choice.get("finish_reason"):
            return True
    return False


def _content_bytes(chunk: dict[str, Any]) -> int:
    choices: list[Any] = chunk.get("choices") or [{}]
    content = (choices[0].get("delta") or {}).get("content")
    return len(content.encode()) if isinstance(content, str) else 0


class ChunkRelay:
    """The state of one relayed stream."""

    def __init__(
        self, worker: str, decode_usage: Callable[[Any], Usage], meter: RelayMeter | None = None
    ) -> None:
        self.worker = worker
        self._decode_usage = decode_usage
        self.started = False  # an event with content has gone out
        self.held: list[bytes] = []  # events before it (the role chunk)
        self.usage: WireUsage | None = None
        self.done = False
        self._model: tuple[bytes, bytes] | None = None  # upstream's model field -> the worker's
        # For an estimate when the upstream reports no usage (or the caller leaves before it).
        self.meter = meter if meter is not None else RelayMeter()

    def forward(self, events: bytes) -> bytes:
        """A block of whole events that needs no look inside, ready for the client."""
        meter = self.meter
        meter.bytes += len(events)
        meter.events += events.count(b"\n\n")
        if self._model is not None:
            return events.replace(*self._model)
        return events

    def inspect(self, events: bytes) -> bytes:
        """A block that does need a look: the bytes to forward now (maybe none)."""
        out: list[bytes] = []
        for raw in events.split(b"\n\n"):
            event = raw.lstrip(b"\n")
            if not event:
                continue
            data = data_of(event)
            if data is None:  # a comment or a field without data: harmless, pass it on
                out.append(event)
                continue
            if data == b"[DONE]":
                self.done = True
                break
            try:
                chunk = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise malformed_event(self.worker) from None
            if not isinstance(chunk, dict):
                raise malformed_event(self.worker)
            if "error" in chunk:
                raise ProviderError(
                    "upstream", f"worker {self.worker!r} failed mid-stream", worker=self.worker
                )
            usage = chunk.get("usage")
            if usage:
                self.usage = WireUsage(self._decode_usage(usage), chunk)
                if not chunk.get("choices"):
                    continue  # the ingress re-emits it at the end, with the cost
                event = b"data: " + orjson.dumps({k: v for k, v in chunk.items() if k != "usage"})
            if not self.started:
                if not _has_content(chunk):
                    self.held.append(event)
                    continue
                self.started = True
                self._learn(event, chunk)
                out[:0] = self.held
                self.held = []
            out.append(event)
        if not out or not self.started:
            return b""
        return self.forward(b"\n\n".join(out) + b"\n\n")

    def _learn(self, event: bytes, chunk: dict[str, Any]) -> None:
        self.meter.wrapping = max(0, len(event) + 2 - _content_bytes(chunk))
        model = chunk.get("model")
        if not isinstance(model, str) or model == self.worker:
            return
        for separator in (b'"model":', b'"model": '):
            field = separator + orjson.dumps(model)
            if field in event:
                self._model = (field, separator + orjson.dumps(self.worker))
                return

    def finish(self) -> list[bytes | WireUsage]:
        """What is left to send at the end: held events, and the usage (estimated when the
        upstream reported none; the engine fills in the prompt side)."""
        left: list[bytes | WireUsage] = []
        if self.held:
            left.append(self.forward(b"\n\n".join(self.held) + b"\n\n"))
            self.held = []
        if self.usage is not None:
            left.append(self.usage)
        else:
            left.append(WireUsage(Usage(0, self.meter.answer_tokens())))
        return left


async def relay_chunks(
    opening: AbstractAsyncContextManager[StreamBody],
    worker: str,
    decode_usage: Callable[[Any], Usage],
    meter: RelayMeter | None = None,
) -> WireStream:
    relay = ChunkRelay(worker, decode_usage, meter)
    splitter = EventSplitter()
    async with opening as body:
        while block := await body.read():
            events = splitter.feed(block)
            if not events:
                continue
            out = relay.forward(events) if relay.started and not _needs_look(events) else None
            if out is None:
                out = relay.inspect(events)
            if out:
                yield out
            if relay.done:
                break
        else:
            rest = splitter.rest()
            if rest:
                out = relay.inspect(rest + b"\n\n")
                if out:
                    yield out
    for item in relay.finish():
        yield item
