"""A model that runs inside Podium (a ``local`` worker) takes, unless told otherwise, as many
calls at once as it has slots, counted by each process alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podium.config import WorkerConfig
from podium.providers.base import ProviderRegistry
from podium.providers.egress import Egress
from podium.providers.local import register_providers as register_local
from podium.providers.openai import register_providers as register_openai
from podium.secrets import EnvironmentSecrets
from podium.workers import WorkerPool


def pool(tmp_path: Path, *workers: dict[str, Any]) -> WorkerPool:
    registry = ProviderRegistry()
    register_local(registry)
    register_openai(registry)
    built = WorkerPool(registry, http=Egress(), secrets=EnvironmentSecrets({}), data_dir=tmp_path)
    built.load([WorkerConfig.model_validate(worker) for worker in workers])
    return built


def local(name: str = "smol", **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "local", "model": name, **extra}


def test_an_embedded_model_takes_its_slots_calls_at_once(tmp_path: Path) -> None:
    workers = pool(
        tmp_path,
        local(options={"model": "smollm2-135m", "parallel": 3}),
        local("told", options={"model": "smollm2-135m"}, limits={"concurrency": 8}),
        local("learning", options={"model": "smollm2-135m"}, limits={"adaptive": True}),
        {"name": "remote", "provider": "openai", "model": "gpt", "base_url": "http://x/v1"},
    )
    slots = {worker.config.name: worker.capacity.slots for worker in workers}
    assert slots == {"smol": 3, "told": 8, "learning": 1, "remote": None}
    learning = workers.get("learning")
    assert learning is not None and learning.capacity.adaptive is not None
    # A call waits for a slot as long as it would have waited in the server's line.
    waits = {worker.config.name: worker.capacity.limits.queue_seconds for worker in workers}
    assert waits == {"smol": 60.0, "told": 10.0, "learning": 10.0, "remote": 10.0}


async def test_its_slots_hold_through_a_change_of_limits_and_are_never_shared(
    tmp_path: Path,
) -> None:
    workers = pool(
        tmp_path,
        local(options={"model": "smollm2-135m", "parallel": 2}),
        {"name": "remote", "provider": "openai", "model": "gpt", "base_url": "http://x/v1"},
    )
    shared: Any = object()  # never asked: a replica's embedded model is its own
    workers.set_shared_slots(shared)
    smol, remote = workers.get("smol"), workers.get("remote")
    assert smol is not None and remote is not None
    assert smol.capacity.shared is None and remote.capacity.shared is shared
    await workers.update("smol", {"limits": {"rpm": 600}})
    assert (smol.capacity.slots, smol.capacity.limits.rpm) == (2, 600)
    await workers.update("smol", {"limits": {"concurrency": 1}})
    assert smol.capacity.slots == 1
    await workers.update("smol", {"limits": {"concurrency": None}})
    assert smol.capacity.slots == 2
