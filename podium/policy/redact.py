"""Reversible pseudonymisation: detected values become typed placeholders (``<PERSON_1>``,
``<EMAIL_2>``) before a worker sees the request; the answer gets the values back.

Within one request the same value always gets the same placeholder, so a model can still
refer to "<PERSON_1>" consistently. The mapping lives only in the request's context. In a
stream, a placeholder may arrive split across chunks: the restorer holds back only the
shortest tail that could still be the start of a placeholder (at most
``MAX_PLACEHOLDER`` characters), never the whole answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import orjson

from podium.documents import TEXT, readable
from podium.policy.findings import Finding
from podium.types import (
    ChatRequest,
    ChatResponse,
    CitationDelta,
    ContentPart,
    DocumentPart,
    EventStream,
    JSONObject,
    Message,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    passages,
    spans_of,
)

PLACEHOLDER = re.compile(r"<([A-Z][A-Z_]{1,30})_(\d{1,6})>")
MAX_PLACEHOLDER = 40
# A tail that may still grow into a placeholder: "<", "<PER", "<PERSON_", "<PERSON_1".
_PARTIAL = re.compile(r"<(?:[A-Z][A-Z_]{0,30}(?:_\d{0,6})?)?$")


class Vault:
    """One request's placeholder table (placeholder -> value) and its reverse."""

    def __init__(self, table: dict[str, str] | None = None) -> None:
        self.table: dict[str, str] = table if table is not None else {}
        self._reverse = {value: key for key, value in self.table.items()}
        self._counts: dict[str, int] = {}
        for key in self.table:
            match = PLACEHOLDER.fullmatch(key)
            if match:
                kind, number = match.group(1), int(match.group(2))
                self._counts[kind] = max(self._counts.get(kind, 0), number)

    def placeholder(self, kind: str, value: str) -> str:
        existing = self._reverse.get(value)
        if existing is not None:
            return existing
        number = self._counts.get(kind, 0) + 1
        self._counts[kind] = number
        key = f"<{kind}_{number}>"
        self.table[key] = value
        self._reverse[value] = key
        return key

    def replace(self, text: str, findings: Sequence[Finding]) -> str:
        if not findings:
            return text
        pieces: list[str] = []
        cursor = 0
        for finding in sorted(findings, key=lambda f: f.start):
            if finding.start < cursor:
                continue  # overlapping spans are resolved upstream; never split a value
            pieces.append(text[cursor : finding.start])
            pieces.append(self.placeholder(finding.kind, text[finding.start : finding.end]))
            cursor = finding.end
        pieces.append(text[cursor:])
        return "".join(pieces)

    def restore(self, text: str, *, quote: bool = False) -> str:
        """Put the values back. ``quote`` escapes them for a JSON string (tool arguments)."""
        if "<" not in text or not self.table:
            return text

        def value(match: re.Match[str]) -> str:
            original = self.table.get(match.group(0))
            if original is None:
                return match.group(0)
            return json.dumps(original, ensure_ascii=False)[1:-1] if quote else original

        return PLACEHOLDER.sub(value, text)


def message_findings(message: Message, inspect: Callable[[str], list[Finding]]) -> list[Finding]:
    """The values in a message's text parts, at their places in its joined text
    (``Message.text()``). A worker may read the parts as one string (Chat Completions joins
    them) or each alone (as blocks), so both are inspected: a value split across two parts is
    found in the joined text, and one the part before it hides when joined (a card number
    after digits) in its part. Overlapping finds become one, of the longer one's kind."""
    texts = [part.text for part in message.content if isinstance(part, TextPart) and part.text]
    if len(texts) <= 1:
        return list(inspect(texts[0])) if texts else []
    found = list(inspect("".join(texts)))
    offset = 0
    for text in texts:
        found.extend(replace(f, start=f.start + offset, end=f.end + offset) for f in inspect(text))
        offset += len(text)
    merged: list[Finding] = []
    for finding in sorted(found, key=lambda f: (f.start, -f.end)):
        last = merged[-1] if merged else None
        if last is None or finding.start >= last.end:
            merged.append(finding)
            continue
        longer = finding if finding.end - finding.start > last.end - last.start else last
        merged[-1] = replace(longer, start=last.start, end=max(last.end, finding.end))
    return merged


def _schema_text(schema: JSONObject) -> str:
    return orjson.dumps(schema).decode()


def settings_texts(request: ChatRequest, *, schema: bool = True) -> Iterator[str]:
    """What else of the request a worker reads besides its messages: its tools' descriptions
    and parameter schemas (their descriptions, enums and defaults), the answer's schema
    (``schema``: unless the operator wrote it, as a contract's is) and the stop sequences."""
    for tool in request.tools:
        if tool.description:
            yield tool.description
        yield _schema_text(tool.parameters)
    form = request.response_format
    if schema and form is not None and form.schema:
        yield _schema_text(form.schema)
    yield from request.stop


def _pseudonymise_settings(
    request: ChatRequest, vault: Vault, inspect: Callable[[str], list[Finding]], *, schema: bool
) -> tuple[ChatRequest, list[str]]:
    """:func:`settings_texts`' values replaced: a schema is replaced in its JSON text (which a
    placeholder keeps valid) and read back."""
    kinds: list[str] = []

    def text(value: str) -> str:
        findings = inspect(value)
        kinds.extend(f.kind for f in findings)
        return vault.replace(value, findings) if findings else value

    def json_schema(value: JSONObject) -> JSONObject:
        written = _schema_text(value)
        findings = inspect(written)
        if not findings:
            return value
        kinds.extend(f.kind for f in findings)
        loaded: JSONObject = orjson.loads(_replace_json(written, findings, vault))
        return loaded

    tools = [
        replace(
            tool,
            description=text(tool.description) if tool.description else tool.description,
            parameters=json_schema(tool.parameters),
        )
        for tool in request.tools
    ]
    form = request.response_format
    if schema and form is not None and form.schema:
        form = replace(form, schema=json_schema(form.schema))
    stop = [text(sequence) for sequence in request.stop]
    if not kinds:
        return request, kinds
    return replace(request, tools=tools, response_format=form, stop=stop), kinds


def _replace_parts(
    parts: list[ContentPart], findings: Sequence[Finding], vault: Vault
) -> list[ContentPart]:
    """``parts`` with each of ``findings`` (places in the joined text of the text parts)
    replaced: its placeholder goes where the value starts, and the rest of a value that runs
    on into the next parts is taken out of them."""
    joined = "".join(p.text for p in parts if isinstance(p, TextPart) and p.text)
    out: list[ContentPart] = []
    offset = 0
    for part in parts:
        if not (isinstance(part, TextPart) and part.text):
            out.append(part)
            continue
        start, end = offset, offset + len(part.text)
        offset = end
        pieces: list[str] = []
        cursor = start
        for finding in findings:
            if finding.end <= start or finding.start >= end:
                continue
            if finding.start >= cursor:
                pieces.append(joined[cursor : finding.start])
                pieces.append(vault.placeholder(finding.kind, joined[finding.start : finding.end]))
            cursor = min(finding.end, end)
        pieces.append(joined[cursor:end])
        out.append(replace(part, text="".join(pieces)))
    return out


def pseudonymise_request(
    request: ChatRequest,
    vault: Vault,
    inspect: Callable[[str], list[Finding]],
    *,
    schema: bool = True,
) -> tuple[ChatRequest, list[str]]:
    """The request with every detected value replaced, and the kinds replaced (one per value).
    ``schema``: see :func:`settings_texts`."""
    request, kinds = _pseudonymise_settings(request, vault, inspect, schema=schema)
    messages: list[Message] = []
    changed = False
    for message in request.messages:
        parts: list[ContentPart] = list(message.content)
        findings = message_findings(message, inspect)
        if findings:
            kinds.extend(f.kind for f in findings)
            parts = _replace_parts(parts, findings, vault)
            changed = True
        for index, part in enumerate(parts):
            if isinstance(part, DocumentPart) and part.text is not None:
                # Sent as its text, values replaced: the file itself would carry them still,
                # and so would its name, title and context, which go into that text.
                full = readable(part)
                findings = inspect(full)
                kinds.extend(f.kind for f in findings)
                text = vault.replace(full, findings) if findings else full
                parts[index] = DocumentPart(text=text, media_type=TEXT, cache=part.cache)
                changed = True
        calls = []
        for call in message.tool_calls:
            findings = inspect(call.arguments)
            if findings:
                kinds.extend(f.kind for f in findings)
                call = replace(call, arguments=_replace_json(call.arguments, findings, vault))
                changed = True
            calls.append(call)
        messages.append(replace(message, content=parts, tool_calls=calls))
    if not changed:
        return request, kinds
    return replace(request, messages=messages), kinds


def _replace_json(arguments: str, findings: Sequence[Finding], vault: Vault) -> str:
    """Placeholders contain no characters JSON escapes, so replacing inside JSON text keeps it
    valid as long as no finding crosses a quote."""
    safe = [f for f in findings if '"' not in arguments[f.start : f.end]]
    return vault.replace(arguments, safe)


def restore_response(
    response: ChatResponse, vault: Vault, *, json_text: bool = False
) -> ChatResponse:
    """``json_text``: the answer is JSON, so each value is escaped for the string it is put
    in (a value with a line break or a quote would break it), as in tool-call arguments."""
    if not vault.table:
        return response
    if response.citations:  # restored passage by passage, so the cited spans stay in place
        restored = [
            (vault.restore(text, quote=json_text), cited) for text, cited in passages(response)
        ]
        response.text = "".join(text for text, _ in restored)
        response.citations = spans_of(restored)
    else:
        response.text = vault.restore(response.text, quote=json_text)
    response.tool_calls = [
        ToolCall(call.id, call.name, vault.restore(call.arguments, quote=True))
        for call in response.tool_calls
    ]
    return response


class StreamRestorer:
    """Restores placeholders in pieces of text as they arrive, holding back only a tail that
    could still become one."""

    def __init__(self, vault: Vault, *, quote: bool = False) -> None:
        self.vault = vault
        self.quote = quote
        self.pending = ""

    def feed(self, piece: str) -> str:
        text = self.pending + piece
        if "<" not in text:
            self.pending = ""
            return text
        cut = len(text)
        tail_start = text.rfind("<", max(0, len(text) - MAX_PLACEHOLDER))
        if tail_start >= 0 and _PARTIAL.match(text, tail_start):
            cut = tail_start
        self.pending = text[cut:]
        return self.vault.restore(text[:cut], quote=self.quote)

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return self.vault.restore(text, quote=self.quote)


async def restore_events(
    events: EventStream, vault: Vault, *, json_text: bool = False
) -> EventStream:
    """The stream with values restored in text and in tool-call arguments (``json_text``: as
    :func:`restore_response`)."""
    text = StreamRestorer(vault, quote=json_text)
    calls: dict[int, StreamRestorer] = {}
    async for event in events:
        if isinstance(event, TextDelta):
            if event.passage:  # what was held back ends the passage before
                rest = text.flush()
                if rest:
                    yield TextDelta(rest)
            out = text.feed(event.text)
            if out or event.passage:
                yield TextDelta(out, event.passage)
            continue
        if isinstance(event, CitationDelta):  # of the passage in progress: text goes on
            yield event
            continue
        if isinstance(event, ToolCallDelta):
            restorer = calls.setdefault(event.index, StreamRestorer(vault, quote=True))
            arguments = restorer.feed(event.arguments)
            if arguments or event.id is not None or event.name is not None:
                yield replace(event, arguments=arguments)
            continue
        # Anything else ends text and arguments: flush what was held back first.
        rest = text.flush()
        if rest:
            yield TextDelta(rest)
        for index, restorer in calls.items():
            held = restorer.flush()
            if held:
                yield ToolCallDelta(index=index, arguments=held)
        yield event
    rest = text.flush()
    if rest:
        yield TextDelta(rest)
    for index, restorer in calls.items():
        held = restorer.flush()
        if held:
            yield ToolCallDelta(index=index, arguments=held)
