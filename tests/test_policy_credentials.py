from __future__ import annotations

import pytest

from podium.config import WorkerConfig
from podium.errors import PodiumError
from podium.policy.credentials import CredentialHosts, destination


def config(name: str, base_url: str | None, key: str | None = "OPENAI_KEY") -> WorkerConfig:
    return WorkerConfig(name=name, provider="openai", model="m", base_url=base_url, api_key_env=key)


@pytest.mark.parametrize(
    ("base_url", "host"),
    [
        ("https://API.openai.com/v1", "api.openai.com:443"),
        ("http://vllm.internal/v1", "vllm.internal:80"),
        ("http://10.0.0.5:8000/v1", "10.0.0.5:8000"),
        (None, None),
    ],
)
def test_a_destination_is_the_host_and_port_a_key_would_reach(
    base_url: str | None, host: str | None
) -> None:
    assert destination(config("w", base_url)) == host


def test_a_key_is_bound_to_its_startup_hosts_whatever_the_path_or_case() -> None:
    hosts = CredentialHosts([config("a", "https://api.openai.com/v1")])
    hosts.check(config("b", "https://API.OPENAI.COM:443/v2"))  # the same host and port
    hosts.check(config("c", None))  # the provider's own API
    hosts.check(config("d", "http://anywhere:1/v1", key=None))  # no key to leak
    with pytest.raises(PodiumError) as refused:
        hosts.check(config("e", "https://api.openai.com.evil.example/v1"))
    assert refused.value.status == 403 and "only to api.openai.com:443" in refused.value.message
    with pytest.raises(PodiumError, match="to no host but a provider's own API"):
        hosts.check(config("f", "https://api.openai.com/v1", key="ANOTHER_KEY"))
