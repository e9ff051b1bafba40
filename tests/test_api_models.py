"""``GET /v1/models`` and ``/v1/models/{model}`` through both vendors' SDKs: what a caller may
ask for, behind its key and its scopes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from podium.policy.keys import KeyStore, NewKey
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker
from tests.contract_helpers import GOOD, ONE_STRING, fake_worker, running, write_contract


def pool(url: str) -> list[dict[str, Any]]:
    return [
        worker("alpha", "openai", url, aliases=["a1"]),
        worker("meta/llama-3", "openai", url),
        {"name": "checker", "provider": "python", "model": "python", "role": "check"},
    ]


async def test_the_openai_sdk_lists_and_retrieves_models(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(pool(fake_openai.base_url), aliases={"best": "alpha"}) as served,
        openai.AsyncOpenAI(base_url=served.v1, api_key="unused", max_retries=0) as client,
    ):
        listed = [model.id async for model in client.models.list()]
        alpha = await client.models.retrieve("alpha")
        slashed = await client.models.retrieve("meta/llama-3")  # sent as meta%2Fllama-3
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("checker")  # it judges; nobody asks it for answers
    assert listed == ["podium/auto", "alpha", "a1", "meta/llama-3", "best"]
    assert alpha.id == "alpha" and alpha.object == "model"
    assert slashed.id == "meta/llama-3"
    assert "does not exist" in missing.value.message
    assert missing.value.code == "model_not_found"


async def test_the_anthropic_sdk_lists_pages_and_retrieves(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway(pool(fake_openai.base_url)) as served,
        anthropic.AsyncAnthropic(base_url=served.url, api_key="unused", max_retries=0) as client,
    ):
        everything = [model.id async for model in client.models.list(limit=2)]  # three pages
        first = await client.models.list(limit=2)
        one = await client.models.retrieve("meta/llama-3")
        with pytest.raises(anthropic.NotFoundError):
            await client.models.retrieve("nope")
        with pytest.raises(anthropic.BadRequestError):
            await client.models.list(limit=0)
    assert everything == ["podium/auto", "alpha", "a1", "meta/llama-3"]
    assert [model.id for model in first.data] == ["podium/auto", "alpha"]
    assert first.has_more and first.last_id == "alpha"
    assert one.type == "model" and one.id == "meta/llama-3" and one.display_name


async def test_a_key_is_checked_and_its_scopes_narrow_the_list(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(pool(fake_openai.base_url), access={"auth": {"required": True}}) as served:
        keys = KeyStore(served.podium.store)  # type: ignore[arg-type]
        _, key = await keys.create(NewKey(owner="team", scopes=["model:meta/*"]))
        async with httpx.AsyncClient(base_url=served.url) as http:
            anonymous = await http.get("/v1/models")
            anonymous_anthropic = await http.get(
                "/v1/models", headers={"anthropic-version": "2023-06-01"}
            )
            scoped = await http.get("/v1/models", headers={"authorization": f"Bearer {key}"})
            hidden = await http.get("/v1/models/alpha", headers={"authorization": f"Bearer {key}"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"
    assert anonymous_anthropic.status_code == 401
    assert anonymous_anthropic.json()["type"] == "error"  # Anthropic's shape
    assert [model["id"] for model in scoped.json()["data"]] == ["meta/llama-3"]
    assert hidden.status_code == 404


async def test_contracts_are_listed_and_retrieved(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", ONE_STRING)
    async with (
        FakeOpenAI(Behaviour(reply=GOOD)) as fake,
        running(tmp_path, [fake_worker("w1", fake.base_url)]) as (_, url),
        openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        listed = [model.id async for model in client.models.list()]
        contract = await client.models.retrieve("contract/ticket")
    assert "contract/ticket" in listed
    assert contract.owned_by == "podium-contract"
