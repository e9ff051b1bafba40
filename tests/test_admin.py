from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest

from podium.api.admin import KeyOrLoopbackAuth
from podium.api.http import Request
from podium.errors import PodiumError
from podium.secrets import EnvironmentSecrets
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import worker


async def test_list_shows_config_and_health(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as client,
    ):
        listed = (await client.get("/admin/workers")).json()["workers"]
    assert [w["name"] for w in listed] == ["alpha"]
    assert listed[0]["price"] == {
        "input": 1.0,
        "output": 2.0,
        "cached_input": None,
        "cache_write": None,
        "cache_write_long": None,
        "cache_storage_per_hour": 0.0,
        "tiers": [],
    }
    assert listed[0]["health"] == {
        "circuit": "closed",
        "draining": False,
        "in_flight": 0,
        "slots": None,
        "background_in_use": 0,
        "resting_seconds": 0.0,
        "waited": 0,
        "turned_away": 0,
        "vendor_quota": None,
        "adaptive": None,
    }
    # Unset in its settings: what its provider says of the upstream (OpenAI's GPT-4o tiles).
    assert listed[0]["image_tokens"] is None
    assert listed[0]["upstream"] == {
        "image_tokens": {
            "kind": "tiles",
            "tile": 512,
            "per_tile": 170,
            "base": 85,
            "fit": 2048,
            "short_side": 768,
            "low": 85,
        },
        "image_limits": {
            "most_images": 500,
            "most_bytes": 20 * 1024 * 1024,
            "most_total_bytes": 50 * 1024 * 1024,
            "most_side": None,
            "many": None,
            "most_side_many": None,
        },
        "document_urls": False,
    }


async def test_add_reprice_drain_remove_without_restart(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        added = await admin.post(
            "/admin/workers", json=worker("beta", "openai", fake_openai.base_url)
        )
        assert added.status_code == 201, added.text
        raw = await client.chat.completions.with_raw_response.create(
            model="beta", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-podium-worker"] == "beta"
        cost_before = float(raw.headers["x-podium-cost-usd"])

        repriced = await admin.patch("/admin/workers/beta", json={"price": {"output": 20.0}})
        assert repriced.status_code == 200, repriced.text
        assert repriced.json()["price"]["output"] == 20.0
        raw = await client.chat.completions.with_raw_response.create(
            model="beta", messages=[{"role": "user", "content": "hi"}]
        )
        assert float(raw.headers["x-podium-cost-usd"]) > cost_before

        drained = await admin.post("/admin/workers/beta/drain")
        assert drained.json()["health"]["draining"] is True
        models = [m.id async for m in client.models.list()]
        assert "beta" not in models
        with pytest.raises(openai.NotFoundError):  # a draining worker takes no new requests
            await client.chat.completions.create(
                model="beta", messages=[{"role": "user", "content": "hi"}]
            )
        undrained = await admin.post("/admin/workers/beta/undrain")
        assert undrained.json()["health"]["draining"] is False

        removed = await admin.delete("/admin/workers/beta")
        assert removed.json() == {"removed": "beta", "in_flight": 0}
        assert (await admin.get("/admin/workers/beta")).status_code == 404
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(
                model="beta", messages=[{"role": "user", "content": "hi"}]
            )
        assert running.podium.pool.names() == ["alpha"]


async def test_a_pool_with_every_worker_drained_answers_503_not_403(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    # It said "no worker is cleared for this request": a clearance problem, which it is not.
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused", max_retries=0) as client,
    ):
        assert (await admin.post("/admin/workers/alpha/drain")).status_code == 200
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(
                model="podium/auto", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.status_code == 503
        assert caught.value.code == "no_serving_worker"
        assert "every worker is draining" in caught.value.message
        assert (await admin.post("/admin/workers/alpha/undrain")).status_code == 200
        answer = await client.chat.completions.create(
            model="podium/auto", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/admin/workers", {"name": "x", "provider": "openai"}, 422, "model"),
        (
            "POST",
            "/admin/workers",
            {"name": "x", "provider": "openai", "model": "m", "price": {"input": "cheap"}},
            422,
            "price.input",
        ),
        (
            "POST",
            "/admin/workers",
            {"name": "x", "provider": "openai", "model": "m", "colour": "red"},
            422,
            "colour",
        ),
        (
            "POST",
            "/admin/workers",
            {"name": "x", "provider": "nope", "model": "m"},
            422,
            "unknown provider",
        ),
        (
            "POST",
            "/admin/workers",
            {"name": "x", "provider": "openai", "model": "m", "options": {"bogus": 1}},
            422,
            "options.bogus",
        ),
        (
            "POST",
            "/admin/workers",
            {"name": "alpha", "provider": "openai", "model": "m"},
            409,
            "already exists",
        ),
        (
            "POST",
            "/admin/workers",
            {"name": "x", "provider": "openai", "model": "m", "aliases": ["alpha"]},
            409,
            "'alpha' already means worker 'alpha' (its name)",
        ),
        ("PATCH", "/admin/workers/alpha", {"price": {"input": -1}}, 422, "price.input"),
        ("PATCH", "/admin/workers/alpha", {"name": "other"}, 400, "renamed"),
        ("PATCH", "/admin/workers/ghost", {"price": {"input": 1}}, 404, "ghost"),
        ("POST", "/admin/workers/ghost/drain", None, 404, "ghost"),
        ("DELETE", "/admin/workers/ghost", None, 404, "ghost"),
        ("POST", "/admin/workers", [1, 2], 400, "JSON object"),
    ],
)
async def test_bad_changes_name_the_field(
    gateway: Any,
    fake_openai: FakeOpenAI,
    method: str,
    path: str,
    body: Any,
    status: int,
    needle: str,
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
    ):
        response = await admin.request(method, path, json=body)
        assert response.status_code == status, response.text
        assert needle in response.json()["error"]["message"]
        assert running.podium.pool.names() == ["alpha"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "provider": "openai", "model": "m", "api_key": "sk-live-abcdef0123456789"},
        {
            "name": "x",
            "provider": "openai",
            "model": "m",
            "options": {"extra_headers": {"Authorization": "Bearer sk-live-abcdef0123456789"}},
        },
    ],
)
async def test_keys_are_refused_and_not_echoed(
    gateway: Any, fake_openai: FakeOpenAI, body: dict[str, Any]
) -> None:
    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
    ):
        added = await admin.post("/admin/workers", json=body)
        patched = await admin.patch("/admin/workers/alpha", json={"api_key": "sk-live-abcdef"})
    assert added.status_code == 400 and patched.status_code == 400
    assert "api_key_env" in added.json()["error"]["message"]
    assert "sk-live" not in added.text + patched.text


async def test_admin_key_is_required_when_configured(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PODIUM_ADMIN", "admin-secret-0123")
    async with (
        gateway(
            [worker("alpha", "openai", fake_openai.base_url)],
            server={"admin_key_env": "TEST_PODIUM_ADMIN"},
        ) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
    ):
        missing = await admin.get("/admin/workers")
        wrong = await admin.get("/admin/workers", headers={"authorization": "Bearer nope"})
        right = await admin.get(
            "/admin/workers", headers={"authorization": "Bearer admin-secret-0123"}
        )
    assert missing.status_code == 401 and wrong.status_code == 401
    assert "admin-secret" not in missing.text + wrong.text
    assert right.status_code == 200


def _request(client: tuple[str, int] | None, headers: dict[str, str] | None = None) -> Request:
    scope = {
        "method": "GET",
        "path": "/admin/workers",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": client,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    return Request(scope, receive)


async def test_without_a_key_only_loopback_clients_are_admitted() -> None:
    auth = KeyOrLoopbackAuth(EnvironmentSecrets({}), "PODIUM_ADMIN_KEY")
    await auth.authorize(_request(("127.0.0.1", 5000)))
    await auth.authorize(_request(("::1", 5000)))
    for client in (("10.1.2.3", 5000), ("192.168.0.9", 1), None):
        with pytest.raises(PodiumError) as caught:
            await auth.authorize(_request(client))
        assert caught.value.status == 403


async def test_a_custom_admin_auth_plugs_in(gateway: Any, fake_openai: FakeOpenAI) -> None:
    class DenyAll:
        async def authorize(self, request: Request) -> None:
            raise PodiumError("permission", "not today")

    async with (
        gateway([worker("alpha", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
    ):
        running.podium.admin_auth = DenyAll()
        response = await admin.get("/admin/workers")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == "not today"


async def test_names_with_a_slash_are_addressable(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with (
        gateway([worker("openai/gpt-x", "openai", fake_openai.base_url)]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
    ):
        path = "/admin/workers/openai%2Fgpt-x"
        assert (await admin.get(path)).json()["name"] == "openai/gpt-x"
        patched = await admin.patch(path, json={"price": {"input": 9}})
        assert patched.json()["price"]["input"] == 9
        assert (await admin.post(f"{path}/drain")).json()["health"]["draining"] is True
        assert (await admin.delete(path)).status_code == 200
        assert running.podium.pool.names() == []


async def test_a_key_goes_only_to_the_hosts_the_startup_config_sends_it_to(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    keyed = worker("alpha", "openai", fake_openai.base_url, api_key_env="OPENAI_KEY")
    elsewhere = "http://127.0.0.1:9/v1"  # any host podium.yaml does not pair the key with
    async with (
        gateway([keyed]) as running,
        httpx.AsyncClient(base_url=running.url) as admin,
    ):
        stolen = await admin.post(
            "/admin/workers", json=worker("beta", "openai", elsewhere, api_key_env="OPENAI_KEY")
        )
        redirected = await admin.patch("/admin/workers/alpha", json={"base_url": elsewhere})
        same_host = await admin.post(
            "/admin/workers",
            json=worker("gamma", "openai", fake_openai.base_url, api_key_env="OPENAI_KEY"),
        )
        vendor_api = worker("delta", "openai", fake_openai.base_url, api_key_env="OTHER_KEY")
        del vendor_api["base_url"]  # the provider's own API
        vendor = await admin.post("/admin/workers", json=vendor_api)
        keyless = await admin.post("/admin/workers", json=worker("epsilon", "openai", elsewhere))
        alpha = (await admin.get("/admin/workers/alpha")).json()
    for refused in (stolen, redirected):
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert error["code"] == "credential_host_refused" and error["param"] == "base_url"
        assert "127.0.0.1:9" in error["message"] and "podium.yaml" in error["message"]
    assert alpha["base_url"] == fake_openai.base_url  # unchanged
    assert [r.status_code for r in (same_host, vendor, keyless)] == [201, 201, 201]
    assert fake_openai.received == []
    audit = running.podium.audit
    assert audit is not None
    await audit.flush()
    entries = [json.loads(line) for line in audit.path.read_text(encoding="utf-8").splitlines()]
    refusals = [e for e in entries if e["action"] == "workers.refused"]
    assert [(e["target"], e["details"]["host"]) for e in refusals] == [
        ("workers:beta", "127.0.0.1:9"),
        ("workers:alpha", "127.0.0.1:9"),
    ]
