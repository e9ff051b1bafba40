"""``model: "contract/NAME"`` in a batch of either API runs the contract, as the synchronous
endpoints do, under the key that created the batch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai

from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import GOOD, ONE_STRING, fake_worker, running, write_contract
from tests.test_anthropic_batches import QUICK, ask, ended, results, sdk
from tests.test_openai_batches import chat, jsonl, line, read_lines, submit


async def test_a_contract_is_answered_in_a_batch_of_either_api(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", ONE_STRING)
    question = "I was charged twice"
    async with (
        FakeOpenAI(Behaviour(reply=GOOD)) as fake,
        running(tmp_path, [fake_worker("w1", fake.base_url)], batches=QUICK) as (podium, url),
        sdk(url) as claude,
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as gpt,
    ):
        params = ask(question, model="contract/ticket")
        created = await claude.messages.batches.create(
            requests=[{"custom_id": "ticket", "params": params}]
        )
        await ended(claude, created.id)
        got = await results(claude, created.id)
        batch = await submit(gpt, jsonl(line("ticket", chat(question, model="contract/ticket"))))
        for _ in range(500):
            batch = await gpt.batches.retrieve(batch.id)
            if batch.status == "completed":
                break
            await asyncio.sleep(0.02)
        output = await read_lines(gpt, batch.output_file_id)
        await podium.recorder.flush()
        contracts = await podium.store.execute("SELECT contract, ingress FROM traces")
    message = got["ticket"].message
    assert json.loads(message.content[0].text) == {"team": "billing", "confidence": 0.8}
    assert message.model == "contract/ticket"
    answer = output[0]["response"]["body"]["choices"][0]["message"]["content"]
    assert json.loads(answer) == {"team": "billing", "confidence": 0.8}
    assert sorted(tuple(row) for row in contracts) == [
        ("ticket", "anthropic"),
        ("ticket", "openai"),
    ]
