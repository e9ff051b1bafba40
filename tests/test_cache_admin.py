"""``/admin/cache`` and ``podium cache``: an operator sees what the response cache does and can
empty it; only admins may, the clear is audited, and a cache that is off says so."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner, Result

from podium.cli import main
from podium.testing.openai_fake import FakeOpenAI
from tests.conftest import Running, worker
from tests.test_cache import ask, cached, new_key, sdk


def admin(running: Running, **headers: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=running.url, headers=headers)


async def podium_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    # The gateway runs on this event loop; the CLI blocks, so it runs on a thread.
    return await asyncio.to_thread(
        CliRunner().invoke, main, list(args), env=env or {"PODIUM_ADMIN_KEY": ""}
    )


async def test_stats_count_a_miss_a_hit_and_the_entry(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with cached(gateway, fake_openai, ttl_seconds=60) as (running, _):
        async with sdk(running) as client:
            await ask(client)
            await ask(client)
        async with admin(running) as http:
            response = await http.get("/admin/cache")
    assert response.status_code == 200
    stats = response.json()
    assert stats["enabled"] is True
    assert (stats["scope"], stats["ttl_seconds"]) == ("key", 60)
    assert stats["counters"] == {"hits": 1, "misses": 1, "stored": 1, "errors": 0}
    assert stats["backend"]["kind"] == "memory"
    assert stats["backend"]["entries"] == 1 and stats["backend"]["bytes"] > 0


@pytest.mark.parametrize(
    ("method", "path"), [("DELETE", "/admin/cache"), ("POST", "/admin/cache/clear")]
)
async def test_clear_sends_the_next_identical_request_upstream(
    gateway: Any, fake_openai: FakeOpenAI, method: str, path: str
) -> None:
    async with (
        cached(gateway, fake_openai) as (running, _),
        sdk(running) as client,
        admin(running) as http,
    ):
        await ask(client)
        _, before, _ = await ask(client)
        cleared = await http.request(method, path)
        _, after, _ = await ask(client)
        stats = (await http.get("/admin/cache")).json()
    assert before["x-podium-cache"] == "hit"
    assert cleared.status_code == 200
    assert cleared.json()["removed"] == 1 and cleared.json()["shared"] is False
    assert after["x-podium-cache"] == "miss"
    assert len(fake_openai.received) == 2
    assert stats["backend"]["entries"] == 1  # the fresh answer was kept again


async def test_clearing_one_scope_is_refused_not_faked(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with (
        cached(gateway, fake_openai) as (running, _),
        sdk(running) as client,
        admin(running) as http,
    ):
        await ask(client)
        refused = await http.delete("/admin/cache", params={"key": "k1"})
        stats = (await http.get("/admin/cache")).json()
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "cache_clear_all_only" and error["param"] == "key"
    assert "all-or-nothing" in error["message"]
    assert stats["backend"]["entries"] == 1


async def test_a_clear_is_audited(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with cached(gateway, fake_openai) as (running, _):
        async with sdk(running) as client, admin(running) as http:
            await ask(client)
            assert (await http.delete("/admin/cache")).status_code == 200
        audit = running.podium.audit
        assert audit is not None
        await audit.flush()
        entries = [orjson.loads(line) for line in audit.path.read_bytes().splitlines()]
    cleared = [entry for entry in entries if entry["action"].startswith("cache.")]
    assert len(cleared) == 1  # one entry: the outcome, not also the generic "authorized" one
    assert cleared[0]["action"] == "cache.clear" and cleared[0]["target"] == "cache"
    assert cleared[0]["actor"] == "admin:bootstrap"
    assert cleared[0]["details"] == {"backend": "memory", "outcome": "cleared", "removed": 1}


async def test_only_admins_may_see_or_clear_it(
    gateway: Any, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_TEST_ADMIN", "k-0123456789")
    workers = [worker("alpha", "openai", fake_openai.base_url)]
    cache = {"enabled": True}
    async with gateway(workers, cache=cache, server={"admin_key_env": "CACHE_TEST_ADMIN"}) as run:
        application_key = await new_key(run.podium, "team-a")
        async with admin(run) as anonymous:
            missing = await anonymous.delete("/admin/cache")
        async with admin(run, authorization=f"Bearer {application_key}") as application:
            wrong = await application.delete("/admin/cache")
            peek = await application.get("/admin/cache")
        async with admin(run, authorization="Bearer k-0123456789") as operator:
            allowed = await operator.get("/admin/cache")
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication"
    assert wrong.status_code == 403 and peek.status_code == 403
    assert wrong.json()["error"]["code"] == "application_key_refused"
    assert allowed.status_code == 200


async def test_a_cache_that_is_off_says_so(gateway: Any, fake_openai: FakeOpenAI) -> None:
    async with gateway([worker("alpha", "openai", fake_openai.base_url)]) as running:
        async with admin(running) as http:
            shown = await http.get("/admin/cache")
            cleared = await http.delete("/admin/cache")
        refused = await podium_cli("cache", "--url", running.url, "stats")
    for response in (shown, cleared):
        assert response.status_code == 404
        error = response.json()["error"]
        assert error["code"] == "cache_disabled" and "cache: {enabled: true}" in error["message"]
    assert refused.exit_code == 1 and "404" in refused.output and "off" in refused.output
    assert "Traceback" not in refused.output


async def test_cli_stats_and_clear_against_a_running_gateway(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    async with cached(gateway, fake_openai) as (running, _):
        async with sdk(running) as client:
            await ask(client)
            await ask(client)
        url = ["cache", "--url", running.url]
        shown = await podium_cli(*url, "stats")
        as_json = await podium_cli(*url, "stats", "--json")
        cleared = await podium_cli(*url, "clear")
        after = await podium_cli(*url, "stats", "--json")
    assert shown.exit_code == 0, shown.output
    lines = dict(line.split(None, 1) for line in shown.output.splitlines())
    assert lines["backend"] == "memory" and lines["scope"] == "key"
    assert lines["hits"].startswith("1 (50.0% of lookups)") and lines["misses"] == "1"
    assert lines["entries"].startswith("1 of 10000")
    assert orjson.loads(as_json.output)["counters"]["hits"] == 1
    assert cleared.exit_code == 0, cleared.output
    assert cleared.output.startswith("removed 1 entries from the memory cache of process")
    assert orjson.loads(after.output)["backend"]["entries"] == 0


def test_help_lists_the_cache_commands() -> None:
    top = CliRunner().invoke(main, ["--help"])
    listed = [line for line in top.output.splitlines() if line.split()[:1] == ["cache"]]
    assert len(listed) == 1 and not listed[0].endswith("...")
    sub = CliRunner().invoke(main, ["cache", "--help"])
    names = {line.split()[0] for line in sub.output.split("Commands:", 1)[1].strip().splitlines()}
    assert names == {"stats", "clear"}
