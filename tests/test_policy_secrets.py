"""Credential isolation: the encrypted secret store, its CLI, and a gateway that reads provider
keys only from the environment or the store and sends them only to the configured host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from click.testing import CliRunner

from podium.app import create_podium
from podium.cli import main
from podium.policy.secrets import EncryptedSecrets, SecretStoreError, secret_sources
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.server import serve
from tests.conftest import worker

MASTER = "correct horse battery staple 42"
PROVIDER_KEY = "sk-live-0123456789abcdefghijklmnopqrstuv"
CHAT = {"model": "alpha", "messages": [{"role": "user", "content": "hi"}]}


def test_store_round_trip_and_nothing_readable_at_rest(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    store = EncryptedSecrets(path, MASTER)
    store.set("OPENAI_API_KEY", PROVIDER_KEY)
    store.set("ANTHROPIC_API_KEY", "sk-ant-xyz-0000000000")
    raw = path.read_bytes()
    for visible in (PROVIDER_KEY, "OPENAI_API_KEY", "sk-ant"):
        assert visible.encode() not in raw
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    reopened = EncryptedSecrets(path, MASTER)
    assert reopened.get("OPENAI_API_KEY") == PROVIDER_KEY
    assert reopened.names() == ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]
    assert reopened.remove("ANTHROPIC_API_KEY") and not reopened.remove("ANTHROPIC_API_KEY")
    assert EncryptedSecrets(path, MASTER).names() == ["OPENAI_API_KEY"]


def test_wrong_key_tampering_and_bad_names_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    EncryptedSecrets(path, MASTER).set("OPENAI_API_KEY", PROVIDER_KEY)
    with pytest.raises(SecretStoreError, match="key is wrong or the file was changed"):
        EncryptedSecrets(path, "another master key, 32 chars..").get("OPENAI_API_KEY")
    document = orjson.loads(path.read_bytes())
    for field in ("ciphertext", "salt", "nonce"):
        tampered = dict(document)
        data = bytearray(tampered[field].encode())
        data[5] = ord("A") if data[5] != ord("A") else ord("B")
        tampered[field] = data.decode()
        path.write_bytes(orjson.dumps(tampered))
        with pytest.raises(SecretStoreError):
            EncryptedSecrets(path, MASTER).get("OPENAI_API_KEY")
    path.write_bytes(b"\x00garbage")
    with pytest.raises(SecretStoreError, match="not a Podium secret store"):
        EncryptedSecrets(path, MASTER).get("X")
    with pytest.raises(SecretStoreError, match="too short"):
        EncryptedSecrets(path, "short")
    with pytest.raises(SecretStoreError, match="bad secret name"):
        EncryptedSecrets(tmp_path / "other.enc", MASTER).set("'; rm -rf /", "x")


def test_environment_wins_and_no_master_key_means_environment_only(tmp_path: Path) -> None:
    path = tmp_path / "secrets.enc"
    EncryptedSecrets(path, MASTER).set("OPENAI_API_KEY", "from-store-000000")
    EncryptedSecrets(path, MASTER).set("ONLY_STORED", "stored-000000")
    env = {"PODIUM_MASTER_KEY": MASTER, "OPENAI_API_KEY": "from-env-000000"}
    sources = secret_sources(path, "PODIUM_MASTER_KEY", env)
    assert sources.get("OPENAI_API_KEY") == "from-env-000000"
    assert sources.get("ONLY_STORED") == "stored-000000"
    assert secret_sources(path, "PODIUM_MASTER_KEY", {}).get("ONLY_STORED") is None


def test_secrets_cli_reads_values_from_stdin_only(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PODIUM_DATA_DIR": str(tmp_path), "PODIUM_MASTER_KEY": MASTER}
    stored = runner.invoke(main, ["secrets", "set", "OPENAI_API_KEY"], input=PROVIDER_KEY, env=env)
    assert stored.exit_code == 0, stored.output
    assert PROVIDER_KEY not in stored.output
    listed = runner.invoke(main, ["secrets", "ls"], env=env)
    assert listed.output.split() == ["OPENAI_API_KEY"]
    assert EncryptedSecrets(tmp_path / "secrets.enc", MASTER).get("OPENAI_API_KEY") == PROVIDER_KEY
    as_argument = runner.invoke(main, ["secrets", "set", "OPENAI_API_KEY", PROVIDER_KEY], env=env)
    assert as_argument.exit_code != 0  # a value on the command line is refused outright
    no_master = runner.invoke(main, ["secrets", "ls"], env={"PODIUM_DATA_DIR": str(tmp_path)})
    assert no_master.exit_code != 0 and "PODIUM_MASTER_KEY is not set" in no_master.output
    wrong = runner.invoke(main, ["secrets", "ls"], env={**env, "PODIUM_MASTER_KEY": "x" * 20})
    assert wrong.exit_code != 0 and "cannot be opened" in wrong.output
    removed = runner.invoke(main, ["secrets", "rm", "OPENAI_API_KEY"], env=env)
    assert removed.exit_code == 0
    assert runner.invoke(main, ["secrets", "ls"], env=env).output == ""
    generated = runner.invoke(main, ["secrets", "generate-key"])
    assert len(generated.output.strip()) >= 40
    audit = runner.invoke(main, ["audit", "verify"], env=env)
    assert audit.exit_code == 0 and "2 entries" in audit.output


async def test_gateway_uses_the_store_and_never_shows_the_key(
    make_config: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeOpenAI(Behaviour(require_key=PROVIDER_KEY, echo_key=True)) as fake:
        config = make_config(
            [worker("alpha", "openai", fake.base_url, api_key_env="STORED_OPENAI_KEY")]
        )
        EncryptedSecrets(config.access.secrets_path(config.resolved_data_dir()), MASTER).set(
            "STORED_OPENAI_KEY", PROVIDER_KEY
        )
        monkeypatch.delenv("STORED_OPENAI_KEY", raising=False)
        monkeypatch.setenv("PODIUM_MASTER_KEY", MASTER)
        podium = create_podium(config)
        async with serve(podium.app) as url, httpx.AsyncClient(base_url=url) as http:
            ok = await http.post("/v1/chat/completions", json=CHAT)
            assert ok.status_code == 200
            sent = {name.lower(): value for name, value in fake.received[-1].headers.items()}
            assert sent["authorization"] == f"Bearer {PROVIDER_KEY}"
            fake.behaviour.require_key = "sk-something-else-entirely-000000"
            failed = await http.post("/v1/chat/completions", json=CHAT)
            await podium.gateway.drain_background()
        assert failed.status_code == 502
        for text in (ok.text, failed.text, str(failed.headers), str(ok.headers)):
            assert PROVIDER_KEY not in text and PROVIDER_KEY[:12] not in text


async def test_a_request_cannot_move_the_egress_host(gateway: Any) -> None:
    async with FakeOpenAI() as good, FakeOpenAI() as evil:
        async with (
            gateway([worker("alpha", "openai", good.base_url)]) as running,
            httpx.AsyncClient(base_url=running.url) as http,
        ):
            attempts = [
                ({**CHAT, "api_base": evil.base_url}, {}),
                ({**CHAT, "base_url": evil.base_url}, {}),
                ({**CHAT, "extra_headers": {"host": "evil"}}, {}),
                (CHAT, {"x-api-base": evil.base_url}),
                (CHAT, {"x-upstream-url": evil.base_url}),
                ({**CHAT, "model": evil.base_url + "/chat/completions"}, {}),
                ({**CHAT, "model": "openai/" + evil.base_url}, {}),
            ]
            statuses = []
            for body, headers in attempts:
                response = await http.post("/v1/chat/completions", json=body, headers=headers)
                statuses.append(response.status_code)
            # A host header aimed elsewhere changes nothing either: the worker's URL decides.
            hosted = await http.post(
                "/v1/chat/completions", json=CHAT, headers={"host": evil.url.split("//")[1]}
            )
        assert all(status in (400, 404) for status in statuses), statuses
        assert hosted.status_code == 200
        assert evil.received == []
        assert len(good.received) == 1
