"""``POST /v1/embeddings`` through the OpenAI SDK: embedding workers (``role: embed``) behind the
same keys, limits, data policy and traces as chat, and never mixed up with chat workers."""

from __future__ import annotations

import base64
import struct
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from podium.app import create_podium
from podium.config import ConfigError, parse_config
from podium.policy.keys import KeyStore, NewKey
from podium.testing.fakes import fake_vector
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

EVERY_CLASS = {"cleared": ["public", "internal", "confidential", "restricted"]}


def embedder(name: str, url: str, **extra: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"role": "embed", "price": {"input": 0.02, "output": 0}}
    return worker(name, "openai", url, **{**settings, **extra})


def pool(url: str) -> list[dict[str, Any]]:
    return [
        worker("chat", "openai", url, profile=EVERY_CLASS),
        embedder("small", url, aliases=["text-embedding-3-small"], profile=EVERY_CLASS),
        embedder("large", url, price={"input": 0.13, "output": 0}, profile=EVERY_CLASS),
    ]


def client_for(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


async def test_the_sdk_gets_vectors_usage_cost_and_a_trace(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    texts = ["the first passage", "the second passage"]
    async with gateway(pool(fake_openai.base_url)) as served, client_for(served.url) as client:
        raw = await client.embeddings.with_raw_response.create(
            model="text-embedding-3-small", input=texts
        )  # the SDK asks for base64 and decodes it
        floats = await client.embeddings.create(
            model="small", input="one more", encoding_format="float", dimensions=4
        )
        await served.podium.recorder.flush()
        trace = await served.podium.store.get_trace(raw.headers["x-podium-trace-id"])
    answer = raw.parse()
    assert [row.index for row in answer.data] == [0, 1]
    for row, text in zip(answer.data, texts, strict=True):
        assert row.embedding == pytest.approx(fake_vector(f'"{text}"', 8), abs=1e-6)
    assert answer.model == "small" and answer.usage.prompt_tokens == 6
    assert raw.headers["x-podium-worker"] == "small"
    assert raw.headers["x-podium-route"] == "embeddings"
    assert float(raw.headers["x-podium-cost-usd"]) == pytest.approx(6 * 0.02 / 1e6)
    assert floats.data[0].embedding == pytest.approx(fake_vector('"one more"', 4))
    sent = [r.body for r in fake_openai.received]
    assert sent[0] == {"model": "small-model", "input": texts, "encoding_format": "float"}
    assert sent[1]["dimensions"] == 4
    assert trace is not None and trace.ingress == "embeddings" and trace.worker == "small"
    assert trace.input_tokens == 6 and trace.cost_usd == pytest.approx(6 * 0.02 / 1e6)


async def test_podium_auto_takes_the_cheapest_embedder_and_chat_never_does(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(pool(fake_openai.base_url)) as served, client_for(served.url) as client:
        embedded = await client.embeddings.with_raw_response.create(
            model="podium/auto", input="x y"
        )
        chatted = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(openai.BadRequestError) as wrong_door:
            await client.chat.completions.create(
                model="large", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.NotFoundError) as not_embedder:
            await client.embeddings.create(model="chat", input="hi")
    assert embedded.headers["x-podium-worker"] == "small"
    assert chatted.headers["x-podium-worker"] == "chat"
    assert "POST /v1/embeddings" in wrong_door.value.message
    assert wrong_door.value.code == "embedding_model"
    assert "not an embedding model" in not_embedder.value.message
    assert "small" not in not_embedder.value.message  # names no worker the key may not see
    assert [r.path for r in fake_openai.received] == ["/v1/embeddings", "/v1/chat/completions"]


async def test_a_failing_embedder_is_never_replaced_by_another_model(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    fake_openai.behaviour.fail(500, "upstream down", times=3)
    workers = [*pool(fake_openai.base_url)]
    workers[1]["retry"] = {"attempts": 1, "backoff_base": 0.01}
    async with gateway(workers) as served, client_for(served.url) as client:
        with pytest.raises(openai.InternalServerError):
            await client.embeddings.create(model="small", input="hi")
    # The worker's own retry, and then no other model's vectors.
    assert [r.body["model"] for r in fake_openai.received] == ["small-model", "small-model"]


async def test_pii_goes_only_to_cleared_embedders(gateway: Any, fake_openai: FakeOpenAI) -> None:
    workers = [
        worker("chat", "openai", fake_openai.base_url),
        embedder("public-only", fake_openai.base_url),
        embedder(
            "in-house", fake_openai.base_url, price={"input": 1.0, "output": 0}, profile=EVERY_CLASS
        ),
    ]
    card = "Customer paid with card 4111 1111 1111 1111 yesterday."
    async with gateway(workers) as served, client_for(served.url) as client:
        with pytest.raises(openai.PermissionDeniedError):
            await client.embeddings.create(model="public-only", input=card)
        auto = await client.embeddings.with_raw_response.create(model="podium/auto", input=card)
        plain = await client.embeddings.with_raw_response.create(
            model="podium/auto", input="a plain sentence about the weather"
        )
    # The cheapest cleared one: the public-only worker for public text, in-house for PII.
    assert auto.headers["x-podium-worker"] == "in-house"
    assert plain.headers["x-podium-worker"] == "public-only"


async def test_keys_and_rate_limits_apply(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway(pool(fake_openai.base_url), access={"auth": {"required": True}}) as served:
        keys = KeyStore(served.podium.store)  # type: ignore[arg-type]
        _, key = await keys.create(NewKey(owner="rag", rpm=1))
        async with httpx.AsyncClient(base_url=served.url) as http:
            anonymous = await http.post("/v1/embeddings", json={"model": "small", "input": "x"})
            bad_and_anonymous = await http.post("/v1/embeddings", content=b"{not json")
            headers = {"authorization": f"Bearer {key}"}
            first = await http.post(
                "/v1/embeddings", json={"model": "small", "input": "x"}, headers=headers
            )
            second = await http.post(
                "/v1/embeddings", json={"model": "small", "input": "x"}, headers=headers
            )
    assert anonymous.status_code == 401 and bad_and_anonymous.status_code == 401
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.status_code == 429 and "retry-after" in second.headers


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        ({"input": "x"}, "model", "Missing required parameter"),
        ({"model": "small"}, "input", "Missing required parameter"),
        ({"model": "small", "input": []}, "input", "must not be empty"),
        ({"model": "small", "input": ["ok", ""]}, "input[1]", "empty string"),
        ({"model": "small", "input": [1, 2, 3]}, "input", "token ids are not accepted"),
        ({"model": "small", "input": ["x"] * 2049}, "input", "at most 2048"),
        ({"model": "small", "input": "x", "encoding_format": "int8"}, "encoding_format", ""),
        ({"model": "small", "input": "x", "dimensions": 0}, "dimensions", ""),
        ({"model": "small", "input": "x", "api_base": "http://evil"}, "api_base", "provider"),
        ({"model": "small", "input": "x", "bogus": True}, "bogus", "Unrecognized"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    gateway: Any, fake_openai: FakeOpenAI, body: dict[str, Any], param: str, needle: str
) -> None:
    async with (
        gateway(pool(fake_openai.base_url)) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        response = await http.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and needle in error["message"]
    assert fake_openai.received == []


def test_base64_vectors_are_little_endian_float32() -> None:
    from podium.api.embeddings import encode

    encoded = encode([1.0, -0.5], "base64")
    assert struct.unpack("<2f", base64.b64decode(encoded)) == (1.0, -0.5)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"provider": "anthropic"}, "cannot embed text"),
        ({"default": True}, r"only embeds \(role: embed\)"),
    ],
)
def test_embedders_are_checked_at_start(
    tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    entry = embedder("small", "http://127.0.0.1:9/v1")
    settings: dict[str, Any] = {}
    if "provider" in change:
        entry["provider"] = change["provider"]
    if change.get("default"):
        settings["default_worker"] = "small"
    workers = [worker("chat", "openai", "http://127.0.0.1:9/v1"), entry]
    with pytest.raises(ConfigError, match=needle):
        create_podium(parse_config({"data_dir": str(tmp_path), "workers": workers, **settings}))


async def test_ready_counts_only_workers_that_answer_chat(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with gateway(pool(fake_openai.base_url)) as served:
        served.podium.pool.get("chat").draining = True
        async with httpx.AsyncClient(base_url=served.url) as http:
            ready = await http.get("/ready")
    assert ready.status_code == 503  # the embedders answer no chat request


async def test_a_gemini_embedder_answers_with_an_estimated_token_count(
    gateway: Any, fake_gemini: FakeGemini
) -> None:
    workers = [
        worker("chat", "gemini", fake_gemini.base_url),
        {**embedder("gecko", fake_gemini.base_url), "provider": "gemini", "profile": EVERY_CLASS},
    ]
    async with gateway(workers) as served, client_for(served.url) as client:
        answer = await client.embeddings.create(
            model="gecko", input=["first text here", "second"], dimensions=6
        )
    assert [len(row.embedding) for row in answer.data] == [6, 6]
    assert answer.data[1].embedding == pytest.approx(fake_vector('"second"', 6), abs=1e-6)
    assert answer.usage.prompt_tokens > 0  # Gemini reports none: Podium's estimate
    sent = fake_gemini.received[0]
    assert sent.path.endswith("/models/gecko-model:batchEmbedContents")
    assert sent.body["requests"][0] == {
        "model": "models/gecko-model",
        "outputDimensionality": 6,
        "content": {"parts": [{"text": "first text here"}]},
    }
