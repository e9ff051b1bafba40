"""Where a provider key may go.

A worker names the environment variable (or stored secret) that holds its key
(``api_key_env``), and Podium sends that key to the worker's ``base_url``. Whoever can add or
change a worker at run time (the admin API) could therefore point a worker that names
``OPENAI_API_KEY`` at a host of their own and read the key off the first request. So a key is
bound to the hosts the startup configuration pairs it with: a worker added or changed at run
time may send it only there, or to its provider's own API (no ``base_url``). Pairing a key
with a new host is a change to ``podium.yaml``, made by whoever deploys the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from podium.config import WorkerConfig
from podium.errors import PodiumError

DEFAULT_PORTS = {"http": 80, "https": 443}


def destination(worker: WorkerConfig) -> str | None:
    """``host:port`` of the worker's ``base_url``; None for its provider's own API."""
    if worker.base_url is None:
        return None
    parts = urlsplit(worker.base_url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 0)
    return f"{(parts.hostname or '').lower()}:{port}"


class CredentialHosts:
    """The hosts each key may be sent to, as the startup configuration pairs them."""

    def __init__(self, workers: Iterable[WorkerConfig]) -> None:
        self.bound: dict[str, set[str]] = {}
        for worker in workers:
            if worker.api_key_env:
                host = destination(worker)
                if host is not None:
                    self.bound.setdefault(worker.api_key_env, set()).add(host)

    def check(self, worker: WorkerConfig) -> None:
        """Refuse (403) a worker that would send its key to a host it is not bound to."""
        key = worker.api_key_env
        host = destination(worker)
        if not key or host is None or host in self.bound.get(key, set()):
            return
        allowed = sorted(self.bound.get(key, set()))
        where = (
            f"only to {', '.join(allowed)} (or a provider's own API)"
            if allowed
            else "to no host but a provider's own API"
        )
        raise PodiumError(
            "permission",
            f"worker {worker.name!r} may not send the key in {key!r} to {host}: the startup "
            f"configuration sends that key {where}. Pair the key with this host in "
            "podium.yaml to allow it.",
            param="base_url",
            code="credential_host_refused",
        )
