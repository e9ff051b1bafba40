"""Virtual keys: the store, the cache, and what a client sees with good and bad keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from podium.app import Podium
from podium.policy.keys import (
    KeyCache,
    KeyProblem,
    KeyStore,
    NewKey,
    hash_key,
    parse_key,
    scope_allows,
)
from podium.store.sqlite import SQLiteStore
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import Running, worker

CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[KeyStore]:
    db = SQLiteStore(tmp_path / "keys.db")
    await db.open()
    try:
        yield KeyStore(db)
    finally:
        await db.close()


def keys_of(podium: Podium) -> KeyStore:
    cache = podium.extras["keys"]
    assert isinstance(cache, KeyCache)
    return cache.store


async def new_key(podium: Podium, **spec: Any) -> tuple[str, str]:
    record, key = await keys_of(podium).create(NewKey(**{"owner": "team-a", **spec}))
    podium.extras["keys"].invalidate()
    return record.key_id, key


@asynccontextmanager
async def running_with_keys(
    gateway: Any, fake: FakeOpenAI, **settings: Any
) -> AsyncIterator[Running]:
    async with gateway([worker("alpha", "openai", fake.base_url)], **settings) as running:
        yield running


# -- keys and the store ----------------------------------------------------------------------------


def test_keys_are_random_prefixed_and_parse() -> None:
    from podium.policy.keys import new_key as mint

    app_id, app_key = mint()
    admin_id, admin_key = mint(admin=True)
    assert app_key.startswith(f"pk-{app_id}-") and admin_key.startswith(f"pa-{admin_id}-")
    assert parse_key(app_key) == (False, app_id)
    assert parse_key(admin_key) == (True, admin_id)
    assert mint()[1] != app_key
    assert len(app_key) > 50


async def test_store_keeps_only_the_hash(store: KeyStore, tmp_path: Path) -> None:
    record, key = await store.create(NewKey(owner="team-a", rpm=10, metadata={"tier": "gold"}))
    assert record.key_hash == hash_key(key)
    raw = (tmp_path / "keys.db").read_bytes()
    wal = tmp_path / "keys.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert key.encode() not in raw
    # the random part whole: it may itself hold "-", so splitting on the last one could
    # leave a single character that any file holds
    secret = key.split("-", 2)[2]
    assert len(secret) == 43 and secret.encode() not in raw
    (loaded,) = await store.all()
    assert loaded.owner == "team-a" and loaded.rpm == 10 and loaded.metadata == {"tier": "gold"}


async def test_bad_specs_are_refused(store: KeyStore) -> None:
    with pytest.raises(KeyProblem, match="bad scope"):
        await store.create(NewKey(owner="a", scopes=["models:gpt"]))
    with pytest.raises(KeyProblem, match="owner"):
        await store.create(NewKey(owner=""))
    with pytest.raises(KeyProblem, match="no key"):
        await store.revoke("0123456789")
    with pytest.raises(KeyProblem, match="no key"):
        await store.revoke("'; DROP TABLE podium_keys; --")


def test_scopes_narrow_per_kind() -> None:
    scopes = ["model:gpt-4o*", "route:openai"]
    assert scope_allows(scopes, "model", "gpt-4o-mini")
    assert not scope_allows(scopes, "model", "claude")
    assert scope_allows(scopes, "contract", "anything")  # contracts not restricted
    assert not scope_allows(scopes, "route", "anthropic")
    assert scope_allows(["*"], "model", "x")


async def test_cache_sees_revocation_only_after_its_ttl(store: KeyStore) -> None:
    now = [0.0]
    cache = KeyCache(store, ttl=5.0, clock=lambda: now[0])
    record, key = await store.create(NewKey(owner="team-a"))
    assert (await cache.find(key))[0] is not None
    await store.revoke(record.key_id)
    now[0] = 4.9
    assert (await cache.find(key))[0] is not None  # still cached: no database on the hot path
    now[0] = 5.1
    found, why = await cache.find(key)
    assert found is None and why == "revoked key"


async def test_rotation_keeps_the_id_and_ends_the_old_secret(store: KeyStore) -> None:
    cache = KeyCache(store, ttl=0.001)
    record, old = await store.create(NewKey(owner="team-a", budget_usd=3))
    rotated, new = await store.rotate(record.key_id, grace_seconds=60)
    assert rotated.key_id == record.key_id and rotated.budget_usd == 3
    await asyncio.sleep(0.01)
    assert (await cache.find(new))[0] is not None
    assert (await cache.find(old))[0] is not None  # within the grace period
    _, newer = await store.rotate(record.key_id)
    await asyncio.sleep(0.01)
    assert (await cache.find(new))[0] is None
    assert (await cache.find(old))[0] is None
    assert (await cache.find(newer))[0] is not None


async def test_keys_seen_before_still_expire_within_one_snapshot(store: KeyStore) -> None:
    wall = [time.time()]
    cache = KeyCache(store, ttl=3600, wall=lambda: wall[0])
    record, old = await store.create(NewKey(owner="team-a", expires_at=wall[0] + 100))
    _, new = await store.rotate(record.key_id, grace_seconds=10)
    for _ in range(2):  # the second time from the keys seen in this snapshot
        assert (await cache.find(old))[0] is not None
        assert (await cache.find(new))[0] is not None
        assert cache.find_in(await cache.snapshot(), new + "x") == (None, "malformed key")
    wall[0] += 11
    assert await cache.find(old) == (None, "rotated key")
    assert (await cache.find(new))[0] is not None
    wall[0] += 100
    assert await cache.find(new) == (None, "expired key")


async def test_cache_reloads_once_for_many_concurrent_lookups(store: KeyStore) -> None:
    calls = 0
    original = store.all

    async def counted() -> Any:
        nonlocal calls
        calls += 1
        return await original()

    store.all = counted  # type: ignore[method-assign]
    cache = KeyCache(store, ttl=60)
    _, key = await store.create(NewKey(owner="a"))
    results = await asyncio.gather(*(cache.find(key) for _ in range(50)))
    assert all(record is not None for record, _ in results)
    assert calls == 1


# -- over HTTP -------------------------------------------------------------------------------------


async def test_open_until_the_first_key_then_keys_are_required(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with running_with_keys(gateway, fake_openai) as running:
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client:
            await client.chat.completions.create(**CHAT)  # zero set-up: no keys, no checks
            _, key = await new_key(running.podium)
            with pytest.raises(openai.AuthenticationError) as refused:
                await client.chat.completions.create(**CHAT)
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key"  # type: ignore[index]
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=key) as client:
            answer = await client.chat.completions.create(**CHAT)
        assert answer.choices[0].message.content
        async with anthropic.AsyncAnthropic(base_url=running.url, api_key=key) as sdk:
            message = await sdk.messages.create(
                model="alpha", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
            )
        assert message.content
        async with anthropic.AsyncAnthropic(base_url=running.url, api_key="pk-nope") as sdk:
            with pytest.raises(anthropic.AuthenticationError) as bad:
                await sdk.messages.create(
                    model="alpha", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
                )
        assert bad.value.status_code == 401
        assert bad.value.body["type"] == "error"  # type: ignore[index]  # Anthropic's shape
    assert len(fake_openai.received) == 3


async def test_required_auth_refuses_anonymous_even_without_keys(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        running_with_keys(gateway, fake_openai, access={"auth": {"required": True}}) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client,
    ):
        with pytest.raises(openai.AuthenticationError):
            await client.chat.completions.create(**CHAT)
    assert fake_openai.received == []


BAD_KEYS = {
    "forged": "pk-0123456789-" + "A" * 43,
    "sql": "pk-' OR '1'='1' --",
    "sql_in_shape": "pk-0123456789-'; DROP TABLE podium_keys; --xxxxxxxxxxxxxxxxxxxxxx",
    "union": "' UNION SELECT key_hash FROM podium_keys --",
    "huge": "pk-" + "a" * 10_000,
    "unicode": "pk-ünïcødé-☃",
    "empty_bearer": "pk-",
    "admin_shape_forged": "pa-0123456789-" + "B" * 43,
}


async def test_bad_keys_are_401_never_500(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with running_with_keys(gateway, fake_openai) as running:
        key_id, good = await new_key(running.podium)
        revoked_id, revoked = await new_key(running.podium)
        await keys_of(running.podium).revoke(revoked_id)
        _, expired = await new_key(running.podium, expires_at=time.time() - 1)
        running.podium.extras["keys"].invalidate()
        candidates = {**BAD_KEYS, "revoked": revoked, "expired": expired}
        # The right id with a wrong secret is a forgery too.
        candidates["wrong_secret"] = f"pk-{key_id}-" + "C" * 43
        async with httpx.AsyncClient(base_url=running.url) as http:
            for label, key in candidates.items():
                for header in ({"authorization": f"Bearer {key}"}, {"x-api-key": key}):
                    encoded = {k: v.encode("utf-8") for k, v in header.items()}
                    response = await http.post("/v1/chat/completions", json=CHAT, headers=encoded)
                    assert response.status_code == 401, (label, response.text)
                    body = response.json()
                    assert body["error"]["type"] == "authentication_error", label
                    assert key not in response.text or len(key) < 4, label
            # The table survived every attempt, and the good key still works.
            ok = await http.post(
                "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {good}"}
            )
            assert ok.status_code == 200
            assert len(await keys_of(running.podium).all()) == 3
            # Other schemes and stray headers with SQL in them change nothing.
            basic = await http.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={"authorization": "Basic Zm9vOmJhcg==", "x-podium-class": "' OR 1=1"},
            )
            assert basic.status_code == 401
    assert len(fake_openai.received) == 1


async def test_nul_bytes_and_huge_headers_never_500(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with running_with_keys(gateway, fake_openai) as running:
        await new_key(running.podium)
        host, port = running.url.removeprefix("http://").split(":")
        body = b'{"model":"alpha","messages":[{"role":"user","content":"hi"}]}'

        async def raw(header: bytes) -> int:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json"
                b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n"
                + header
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            status_line = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return int(status_line.split()[1]) if status_line else 0

        nul = await raw(b"authorization: Bearer pk-0123456789-\x00" + b"A" * 42)
        assert nul in (400, 401)
        huge = await raw(b"x-api-key: pk-" + b"a" * 70_000)
        assert huge in (400, 401, 431)
        async with httpx.AsyncClient(base_url=running.url) as http:
            padded = await http.post(
                "/v1/chat/completions",
                json=CHAT,
                headers={f"x-pad-{i}": "z" * 1000 for i in range(80)},
            )
        assert padded.status_code == 431
    assert fake_openai.received == []


async def test_scopes_limit_models_and_workers(gateway: Any, fake_openai: FakeOpenAI) -> None:
    workers = [
        worker("alpha", "openai", fake_openai.base_url),
        worker("beta", "openai", fake_openai.base_url),
    ]
    async with gateway(workers) as running:
        _, model_key = await new_key(running.podium, scopes=["model:alpha"])
        _, worker_key = await new_key(running.podium, scopes=["worker:beta"])
        _, route_key = await new_key(running.podium, scopes=["route:anthropic"])
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=model_key) as client:
            await client.chat.completions.create(**CHAT)
            with pytest.raises(openai.PermissionDeniedError, match="may not use model 'beta'"):
                await client.chat.completions.create(**{**CHAT, "model": "beta"})
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=worker_key) as client:
            routed = await client.chat.completions.with_raw_response.create(
                **{**CHAT, "model": "podium/auto"}
            )
            assert routed.headers["x-podium-worker"] == "beta"
            with pytest.raises(openai.NotFoundError, match="not available to you"):
                await client.chat.completions.create(**CHAT)  # alpha is outside its scope
        async with openai.AsyncOpenAI(base_url=running.v1, api_key=route_key) as client:
            with pytest.raises(openai.PermissionDeniedError, match="route 'openai'"):
                await client.chat.completions.create(**CHAT)
    assert len(fake_openai.received) == 2


async def test_admin_api_takes_admin_keys_only(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with running_with_keys(gateway, fake_openai) as running:
        _, app_key = await new_key(running.podium)
        async with httpx.AsyncClient(base_url=running.url) as http:
            # Before any admin key exists, the default check (loopback) lets the first one in.
            created = await http.post("/admin/keys", json={"owner": "ops", "admin": True})
            assert created.status_code == 201
            admin_key = created.json()["key"]
            assert admin_key.startswith("pa-")
            running.podium.extras["keys"].invalidate()
            as_app = await http.get("/admin/keys", headers={"authorization": f"Bearer {app_key}"})
            assert as_app.status_code == 403
            missing = await http.get("/admin/keys")
            assert missing.status_code == 401
            wrong = await http.get(
                "/admin/workers", headers={"authorization": "Bearer pa-0123456789-" + "x" * 43}
            )
            assert wrong.status_code == 401
            admin = {"authorization": f"Bearer {admin_key}"}
            listed = await http.get("/admin/keys", headers=admin)
            assert listed.status_code == 200
            assert "key_hash" not in listed.text and app_key not in listed.text
            assert (await http.get("/admin/workers", headers=admin)).status_code == 200
            # Admin keys cannot call the chat API.
            chat = await http.post("/v1/chat/completions", json=CHAT, headers=admin)
            assert chat.status_code == 403
            new = await http.post(
                "/admin/keys",
                json={"owner": "team-b", "rpm": 5, "scopes": ["model:a*"]},
                headers=admin,
            )
            assert new.status_code == 201
            new_id = new.json()["key_id"]
            rotated = await http.post(f"/admin/keys/{new_id}/rotate", headers=admin)
            assert rotated.status_code == 200 and rotated.json()["key"] != new.json()["key"]
            revoked = await http.post(f"/admin/keys/{new_id}/revoke", headers=admin)
            assert revoked.json()["state"] == "revoked"
            bad = await http.post("/admin/keys", json={"owner": "x", "rpm": "many"}, headers=admin)
            assert bad.status_code == 422 and "rpm" in bad.text
            unknown = await http.post("/admin/keys/'%20OR%201=1/revoke", headers=admin)
            assert unknown.status_code == 404


def test_keys_cli_create_ls_revoke_rotate(tmp_path: Path, make_config: Callable[..., Any]) -> None:
    from click.testing import CliRunner

    from podium.cli import main

    env = {"PODIUM_DATA_DIR": str(tmp_path / "cli")}
    runner = CliRunner()
    created = runner.invoke(
        main,
        ["keys", "create", "--owner", "team-a", "--budget", "5", "--rpm", "60", "--scope",
         "model:gpt-*", "--expires", "30d", "--meta", "tier=gold"],
        env=env,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("pk-")
    key_id = key.split("-")[1]
    listed = runner.invoke(main, ["keys", "ls"], env=env)
    assert key_id in listed.output and "$5/month" in listed.output and key not in listed.output
    rotated = runner.invoke(main, ["keys", "rotate", key_id, "--grace", "1h"], env=env)
    assert rotated.exit_code == 0 and rotated.stdout.strip().startswith("pk-")
    revoked = runner.invoke(main, ["keys", "revoke", key_id], env=env)
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert key_id not in runner.invoke(main, ["keys", "ls"], env=env).output
    assert "revoked" in runner.invoke(main, ["keys", "ls", "--all"], env=env).output
    missing = runner.invoke(main, ["keys", "revoke", "ffffffffff"], env=env)
    assert missing.exit_code != 0 and "no key" in missing.output
    bad = runner.invoke(main, ["keys", "create", "--owner", "x", "--scope", "nope"], env=env)
    assert bad.exit_code != 0 and "bad scope" in bad.output
    audit = runner.invoke(main, ["audit", "verify"], env=env)
    assert audit.exit_code == 0 and "3 entries" in audit.output


async def test_keys_cli_through_a_running_gateway(gateway: Any, fake_openai: FakeOpenAI) -> None:
    from click.testing import CliRunner

    from podium.cli import main

    runner = CliRunner()
    async with running_with_keys(gateway, fake_openai) as running:

        def cli(*args: str) -> Any:
            return runner.invoke(main, ["keys", *args, "--url", running.url])

        # The CLI's HTTP client blocks, so it runs on a thread while the gateway serves.
        created = await asyncio.to_thread(cli, "create", "--owner", "team-z", "--rpm", "7")
        assert created.exit_code == 0, created.output
        key = created.stdout.strip().splitlines()[-1]
        key_id = key.split("-")[1]
        listed = await asyncio.to_thread(cli, "ls")
        assert key_id in listed.output and "7 rpm" in listed.output
        rotated = await asyncio.to_thread(cli, "rotate", key_id)
        assert rotated.exit_code == 0 and rotated.stdout.strip() != key
        revoked = await asyncio.to_thread(cli, "revoke", key_id)
        assert revoked.exit_code == 0 and "revoked" in revoked.output
        record = await keys_of(running.podium).get(key_id)
        assert record is not None and record.revoked_at is not None
