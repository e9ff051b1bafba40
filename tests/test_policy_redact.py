from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from podium.policy.detect import PiiDetector
from podium.policy.findings import Finding
from podium.policy.redact import StreamRestorer, Vault, restore_events, restore_response
from podium.testing.openai_fake import FakeOpenAI
from podium.types import (
    ChatResponse,
    Citation,
    CitationDelta,
    CitedSpan,
    Finish,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    collect,
)
from tests.conftest import worker

CORPUS = Path(__file__).resolve().parents[2] / "shared/data/security/pii/presidio_synth_train.json"
STRUCTURED = {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"}


def pseudonymised_worker(name: str, base_url: str) -> dict[str, Any]:
    """A vendor cleared for public data, and for confidential data only pseudonymised."""
    return worker(
        name, "openai", base_url, profile={"cleared": ["public"], "pseudonymised": ["confidential"]}
    )


def test_same_value_same_placeholder_and_exact_round_trip() -> None:
    text = "Mail ann@example.com, then ann@example.com again, or bob@example.org."
    findings = PiiDetector(["patterns"]).inspect(text)
    vault = Vault()
    hidden = vault.replace(text, findings)
    assert hidden == "Mail <EMAIL_1>, then <EMAIL_1> again, or <EMAIL_2>."
    assert vault.restore(hidden) == text


def test_restore_in_json_escapes_the_value() -> None:
    vault = Vault()
    hidden = vault.replace("12 Main St\nSpringfield", [Finding(0, 23, "ADDRESS")])
    arguments = json.dumps({"to": hidden})
    restored = vault.restore(arguments, quote=True)
    assert json.loads(restored) == {"to": "12 Main St\nSpringfield"}


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 64])
def test_stream_restorer_handles_placeholders_split_anywhere(size: int) -> None:
    vault = Vault({"<PERSON_1>": "Ada Lovelace", "<EMAIL_12>": "ada@example.com"})
    answer = "Dear <PERSON_1>, write to <EMAIL_12> < 3 <PERSON_9> <PERS"
    restorer = StreamRestorer(vault)
    out = "".join(restorer.feed(answer[i : i + size]) for i in range(0, len(answer), size))
    out += restorer.flush()
    assert out == "Dear Ada Lovelace, write to ada@example.com < 3 <PERSON_9> <PERS"


def test_stream_restorer_holds_back_only_a_short_tail() -> None:
    restorer = StreamRestorer(Vault({"<PERSON_1>": "Ada"}))
    assert restorer.feed("a long answer that keeps going <PER") == "a long answer that keeps going "
    assert restorer.pending == "<PER"
    assert restorer.feed("SON_1> done") == "Ada done"
    assert restorer.feed("x" * 500) == "x" * 500  # nothing held without a '<'


async def test_restore_events_covers_text_and_tool_arguments() -> None:
    vault = Vault({"<EMAIL_1>": "ann@example.com"})

    async def events() -> AsyncIterator[StreamEvent]:
        yield TextDelta("to <EM")
        yield TextDelta("AIL_1>")
        yield ToolCallDelta(index=0, id="call_1", name="send", arguments='{"to": "<EMA')
        yield ToolCallDelta(index=0, arguments='IL_1>"}')
        yield Finish("tool_calls")

    out = [event async for event in restore_events(events(), vault)]  # type: ignore[arg-type]
    text = "".join(e.text for e in out if isinstance(e, TextDelta))
    arguments = "".join(e.arguments for e in out if isinstance(e, ToolCallDelta))
    assert text == "to ann@example.com"
    assert json.loads(arguments) == {"to": "ann@example.com"}
    assert isinstance(out[-1], Finish)


async def test_restored_values_keep_passages_and_cited_spans_in_place() -> None:
    vault = Vault({"<PERSON_1>": "Ada Lovelace"})
    source = Citation("Ada wrote it.", 0, "char", 0, 13)

    async def events() -> AsyncIterator[StreamEvent]:
        yield TextDelta("Ask ")
        yield TextDelta("<PER", passage=True)
        yield CitationDelta(source)
        yield TextDelta("SON_1>, who")
        yield TextDelta(" wrote it.", passage=True)

    out = [event async for event in restore_events(events(), vault)]  # type: ignore[arg-type]
    streamed = await collect(_each(out), id="x", model="m")
    answer = ChatResponse(
        "x", "m", text="Ask <PERSON_1>, who wrote it.", citations=[CitedSpan(4, 19, [source])]
    )
    restored = restore_response(answer, vault)
    assert restored.text == streamed.text == "Ask Ada Lovelace, who wrote it."
    assert restored.citations == streamed.citations == [CitedSpan(4, 21, [source])]


async def _each(events: list[StreamEvent]) -> AsyncIterator[StreamEvent]:
    for event in events:
        yield event


async def test_pseudonymised_worker_never_sees_the_values_and_client_gets_them_back(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    prompt = (
        "My card 4111 1111 1111 1111 and my email is jane.doe@example.com, call +44 20 7946 0958"
    )
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        completion = await client.chat.completions.create(
            model="vendor", messages=[{"role": "user", "content": prompt}]
        )
        stream = await client.chat.completions.create(
            model="vendor", messages=[{"role": "user", "content": prompt}], stream=True
        )
        streamed = ""
        async for chunk in stream:
            if chunk.choices:
                streamed += chunk.choices[0].delta.content or ""
    sent = json.dumps([r.body for r in fake_openai.received])
    for value in ("4111 1111 1111 1111", "jane.doe@example.com", "7946 0958"):
        assert value not in sent
    assert "<CREDIT_CARD_1>" in sent and "<EMAIL_1>" in sent
    assert completion.choices[0].message.content == f"fake answer to: {prompt}"
    assert streamed == f"fake answer to: {prompt}"


@pytest.mark.parametrize(
    ("parts", "value"),
    [
        (["Please write to jane.doe@", "example.com today"], "jane.doe@example.com"),
        (["My card is 4111 1111 ", "1111 1111, thanks"], "4111 1111 1111 1111"),
        # Joined, the digits before it hide the card number: found in its part alone.
        (["Invoice 2024", "4111 1111 1111 1111 was charged"], "4111 1111 1111 1111"),
    ],
)
async def test_a_value_split_across_text_parts_or_hidden_by_joining_them_is_replaced(
    gateway: Any, fake_openai: FakeOpenAI, parts: list[str], value: str
) -> None:
    content: Any = [{"type": "text", "text": text} for text in parts]
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        completion = await client.chat.completions.create(
            model="vendor", messages=[{"role": "user", "content": content}]
        )
    sent = json.dumps([r.body for r in fake_openai.received])
    for piece in (value, *value.split("@"), value[:9], value[-9:]):
        assert piece not in sent
    assert completion.choices[0].message.content == "fake answer to: " + "".join(parts)


async def test_a_card_number_hidden_by_joining_parts_still_makes_the_request_confidential(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    content: Any = [
        {"type": "text", "text": "Invoice 2024"},
        {"type": "text", "text": "4111 1111 1111 1111 was charged"},
    ]
    public_only = worker("vendor", "openai", fake_openai.base_url, profile={"cleared": ["public"]})
    async with (
        gateway([public_only]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(
                model="vendor", messages=[{"role": "user", "content": content}]
            )
    assert fake_openai.received == []


async def test_pseudonymising_follows_the_pool_as_workers_are_drained_and_restored(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """``auto`` pseudonymises while some serving worker needs it: the answer per class is
    kept between requests, and must change as soon as the pool does."""
    card = "4111 1111 1111 1111"
    inhouse = worker("inhouse", "openai", fake_openai.base_url, profile={"cleared": ["restricted"]})
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url), inhouse]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):

        async def sent_card() -> bool:
            fake_openai.received.clear()
            await client.chat.completions.create(
                model="inhouse", messages=[{"role": "user", "content": f"my card is {card}"}]
            )
            return card in json.dumps([r.body for r in fake_openai.received])

        assert not await sent_card()  # the vendor may serve this class: pseudonymised
        running.podium.pool.drain("vendor")
        assert await sent_card()  # only the in-house worker is left: no need
        running.podium.pool.drain("vendor", False)
        assert not await sent_card()


async def test_tool_call_arguments_are_restored(gateway: Any, fake_openai: FakeOpenAI) -> None:
    fake_openai.behaviour.tool_call = ("send_mail", '{"to": "<EMAIL_1>"}')
    tools = [
        {"type": "function", "function": {"name": "send_mail", "parameters": {"type": "object"}}}
    ]
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        completion = await client.chat.completions.create(
            model="vendor",
            messages=[{"role": "user", "content": "Mail ann@example.com please"}],
            tools=tools,  # type: ignore[arg-type]
        )
    call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert json.loads(call.function.arguments) == {"to": "ann@example.com"}  # type: ignore[union-attr]
    assert "ann@example.com" not in json.dumps(fake_openai.received[0].body)


@pytest.mark.skipif(not CORPUS.is_file(), reason="the shared PII corpus is not beside the repo")
async def test_no_structured_pii_from_the_corpus_reaches_the_worker(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """Over a sample of the PII train corpus: no e-mail, phone, card, IBAN, SSN or IP value
    reaches a worker cleared only for pseudonymised data, every value the detectors find is
    hidden, at least 85% of names and addresses are, and the client gets the text back."""
    records = json.loads(CORPUS.read_text(encoding="utf-8"))
    sample = random.Random(4).sample(records, 250)
    detector = PiiDetector()
    hidden = total = 0
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        for record in sample:
            text = record["full_text"]
            fake_openai.received.clear()
            completion = await client.chat.completions.create(
                model="vendor", messages=[{"role": "user", "content": text}]
            )
            sent = "\n".join(m["content"] for m in fake_openai.received[0].body["messages"])
            for finding in detector.inspect(text):
                assert text[finding.start : finding.end] not in sent
            for span in record["spans"]:
                value = span["entity_value"]
                if span["entity_type"] in STRUCTURED:
                    assert value not in sent, span
                elif span["entity_type"] in ("PERSON", "STREET_ADDRESS"):
                    total += 1
                    hidden += value not in sent
            answer = completion.choices[0].message.content or ""
            if "\n" not in text.strip() and len(text) < 150:
                assert answer == f"fake answer to: {text.strip()}"
    assert hidden / total >= 0.85


async def test_redaction_is_audited_and_traced_without_the_values(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    prompt = "Please email jane.doe@example.com about card 4111 1111 1111 1111"
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        raw = await client.chat.completions.with_raw_response.create(
            model="vendor", messages=[{"role": "user", "content": prompt}]
        )
        trace_id = raw.headers["x-podium-trace-id"]
        podium = running.podium
        await podium.gateway.drain_background()
        await podium.recorder.flush()
        trace = await podium.store.get_trace(trace_id)
        assert podium.audit is not None
        await podium.audit.flush()
        audit_text = podium.audit.path.read_text(encoding="utf-8")
    assert trace is not None
    assert "pii:pseudonymised CREDIT_CARD=1,EMAIL=1" in trace.policy_actions
    assert trace.data_class == "confidential"
    assert "request.redacted" in audit_text and trace_id in audit_text
    for value in ("jane.doe@example.com", "4111 1111 1111 1111"):
        assert value not in audit_text
        assert value not in json.dumps(trace.policy_actions)


async def test_anthropic_clients_get_values_back_in_a_stream(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    import anthropic

    prompt = "Write to ann@example.com and call +1 (217) 555-0143"
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        anthropic.AsyncAnthropic(base_url=running.url, api_key="x") as sdk,
    ):
        text = ""
        async with sdk.messages.stream(
            model="vendor", max_tokens=64, messages=[{"role": "user", "content": prompt}]
        ) as stream:
            async for piece in stream.text_stream:
                text += piece
    assert text == f"fake answer to: {prompt}"
    sent = json.dumps(fake_openai.received[0].body)
    assert "ann@example.com" not in sent and "555-0143" not in sent


def test_per_key_injection_policy_overrides_the_default() -> None:
    from podium.config import parse_config
    from podium.context import Caller, RequestContext
    from podium.policy.content import InjectionHook
    from podium.policy.guard import InjectionScreen

    hook = InjectionHook(parse_config({}).policy, InjectionScreen(), audit=None)
    strict = RequestContext(
        ingress="openai", headers={}, caller=Caller(metadata={"injection": "block"})
    )
    odd = RequestContext(
        ingress="openai", headers={}, caller=Caller(metadata={"injection": "nuke"})
    )
    assert hook.action(strict) == "block"
    assert hook.action(odd) == "flag"  # unknown values fall back to the configured default


@pytest.mark.parametrize("stream", [False, True])
async def test_a_json_answer_gets_values_back_escaped_and_still_parses(
    gateway: Any, fake_openai: FakeOpenAI, stream: bool
) -> None:
    # The tagger reads this address across its line break: put back raw, the newline would
    # break the JSON string it lands in.
    prompt = "Ship it to 221 Baker Street\nLondon NW1 6XE please."
    request: Any = {
        "model": "vendor",
        "messages": [{"role": "user", "content": prompt}],
        "response_format": {"type": "json_object"},
    }
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        if stream:
            text = ""
            async for chunk in await client.chat.completions.create(stream=True, **request):
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
        else:
            text = (await client.chat.completions.create(**request)).choices[0].message.content
    assert "Baker" not in json.dumps(fake_openai.received[0].body)
    assert json.loads(text or "") == {"answer": f"fake answer to: {prompt}"}


async def test_values_in_tools_answer_schemas_and_stop_sequences_are_replaced_too(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    email = "jane.doe@example.com"
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "send",
                "description": f"Send mail from {email}",
                "parameters": {
                    "type": "object",
                    "properties": {"to": {"type": "string", "enum": [email, "ops@example.org"]}},
                },
            },
        }
    ]
    answer_schema: Any = {
        "type": "json_schema",
        "json_schema": {
            "name": "reply",
            "schema": {"type": "object", "properties": {"sender": {"const": email}}},
        },
    }
    async with (
        gateway([pseudonymised_worker("vendor", fake_openai.base_url)]) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        for extra in ({"tools": tools}, {"response_format": answer_schema}, {"stop": [email]}):
            await client.chat.completions.create(
                model="vendor", messages=[{"role": "user", "content": "Draft a reply."}], **extra
            )
        await running.podium.recorder.flush()
        traces = await running.podium.store.list_traces(limit=10)
    for received in fake_openai.received:
        sent = json.dumps(received.body)
        assert email not in sent and "<EMAIL_1>" in sent
    # The value alone made each request confidential, as in a message.
    assert all(any("pii=EMAIL" in a for a in trace.policy_actions) for trace in traces)
