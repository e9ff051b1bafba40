"""model: "contract/NAME" through the OpenAI SDK."""

from __future__ import annotations

import json
from pathlib import Path

import openai
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


async def test_a_contract_answers_as_a_chat_completion(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", ONE_STRING)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with (
            running(tmp_path, workers) as (_, url),
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused") as client,
        ):
            # A single-string-field input: the whole message is the input.
            completion = await client.chat.completions.create(
                model="contract/ticket",
                messages=[{"role": "user", "content": "I was charged twice"}],
            )
            assert json.loads(completion.choices[0].message.content or "") == {
                "team": "billing",
                "confidence": 0.8,
            }
            assert completion.model == "contract/ticket"
            assert "I was charged twice" in fake.received[-1].body["messages"][-1]["content"]
            # A pinned version, streamed.
            stream = await client.chat.completions.create(
                model="contract/ticket@1",
                messages=[{"role": "user", "content": "The app crashes"}],
                stream=True,
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert json.loads(text)["team"] == "billing"
            # Other models still reach the ordinary path.
            plain = await client.chat.completions.create(
                model="w1", messages=[{"role": "user", "content": "hello"}]
            )
            assert plain.choices[0].message.content == GOOD
            # The model list offers the contract beside the workers.
            listed = {model.id: model.owned_by async for model in client.models.list()}
            assert listed["contract/ticket"] == "podium-contract" and "w1" in listed


async def test_a_json_input_and_its_errors_in_openai_format(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TWO_FIELDS)
    async with FakeOpenAI(Behaviour(reply=GOOD)) as fake:
        workers = [fake_worker("w1", fake.base_url)]
        async with (
            running(tmp_path, workers) as (_, url),
            openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
        ):
            ok = await client.chat.completions.create(
                model="contract/ticket",
                messages=[{"role": "user", "content": '{"text": "hi", "priority": 2}'}],
            )
            assert json.loads(ok.choices[0].message.content or "")["team"] == "billing"
            with pytest.raises(openai.UnprocessableEntityError) as caught:
                await client.chat.completions.create(
                    model="contract/ticket",
                    messages=[{"role": "user", "content": '{"text": "hi"}'}],
                )
            assert "'priority' is a required property" in str(caught.value)
            with pytest.raises(openai.UnprocessableEntityError, match="not JSON"):
                await client.chat.completions.create(
                    model="contract/ticket", messages=[{"role": "user", "content": "hi"}]
                )
            with pytest.raises(openai.NotFoundError):
                await client.chat.completions.create(
                    model="contract/nope", messages=[{"role": "user", "content": "{}"}]
                )
            assert len(fake.received) == 1
