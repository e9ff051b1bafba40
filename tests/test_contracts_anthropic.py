"""model: "contract/NAME" through the Anthropic SDK: the same contract call as the OpenAI
ingress's, answered and refused in Anthropic's format."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import httpx
import pytest

from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import (
    GOOD,
    ONE_STRING,
    TWO_FIELDS,
    fake_worker,
    running,
    write_contract,
)


def only_text(message: anthropic.types.Message) -> str:
    assert [block.type for block in message.content] == ["text"]
    block = message.content[0]
    assert isinstance(block, anthropic.types.TextBlock)
    return block.text


async def test_a_contract_answers_as_a_message(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", ONE_STRING)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with (
            running(tmp_path, workers) as (podium, url),
            anthropic.AsyncAnthropic(base_url=url, api_key="unused") as client,
        ):
            raw = await client.messages.with_raw_response.create(
                model="contract/ticket",
                max_tokens=200,
                messages=[{"role": "user", "content": "I was charged twice"}],
            )
            message = await raw.parse()
            assert json.loads(only_text(message)) == {"team": "billing", "confidence": 0.8}
            assert message.model == "contract/ticket" and message.stop_reason == "end_turn"
            assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
            assert "I was charged twice" in fake.received[-1].body["messages"][-1]["content"]
            await podium.recorder.flush()
            trace = await podium.store.get_trace(raw.headers["x-podium-trace-id"])
            assert trace is not None and trace.ingress == "anthropic"
            assert trace.contract == "ticket"
            # A pinned version, streamed as Anthropic's events.
            async with client.messages.stream(
                model="contract/ticket@1",
                max_tokens=200,
                messages=[{"role": "user", "content": "The app crashes"}],
            ) as stream:
                text = "".join([piece async for piece in stream.text_stream])
                final = await stream.get_final_message()
            assert json.loads(text)["team"] == "billing"
            assert final.stop_reason == "end_turn"
            # Other models still reach the ordinary path.
            plain = await client.messages.create(
                model="w1", max_tokens=50, messages=[{"role": "user", "content": "hello"}]
            )
            assert only_text(plain) == GOOD


async def test_a_contracts_errors_come_in_anthropic_format(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TWO_FIELDS)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with (
            running(tmp_path, workers) as (_, url),
            anthropic.AsyncAnthropic(base_url=url, api_key="unused", max_retries=0) as client,
            httpx.AsyncClient() as plain,
        ):
            ok = await client.messages.create(
                model="contract/ticket",
                max_tokens=200,
                messages=[{"role": "user", "content": '{"text": "hi", "priority": 2}'}],
            )
            assert json.loads(only_text(ok))["team"] == "billing"
            with pytest.raises(anthropic.UnprocessableEntityError) as caught:
                await client.messages.create(
                    model="contract/ticket",
                    max_tokens=200,
                    messages=[{"role": "user", "content": '{"text": "hi"}'}],
                )
            assert "'priority' is a required property" in str(caught.value)
            assert caught.value.body["type"] == "error"  # type: ignore[index]
            assert caught.value.response.headers["x-podium-trace-id"]
            with pytest.raises(anthropic.NotFoundError, match="no contract named 'nope'"):
                await client.messages.create(
                    model="contract/nope",
                    max_tokens=200,
                    messages=[{"role": "user", "content": "{}"}],
                )
            # Anthropic's own rules still hold: max_tokens is required (the SDK refuses to
            # send such a request, so it goes by hand).
            missing = await plain.post(
                f"{url}/v1/messages",
                json={"model": "contract/ticket", "messages": [{"role": "user", "content": "{}"}]},
            )
            assert missing.status_code == 400
            assert missing.json()["error"]["type"] == "invalid_request_error"
            assert "max_tokens" in missing.json()["error"]["message"]
        assert len(fake.received) == 1
