"""The batches of one gateway: one store, one runner and one retention sweep, shared by the APIs
that make batches (Anthropic's Message Batches, OpenAI's Batch API). The first API to ask
builds them; each adds how its own requests are answered (``runner.answers[kind]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from podium.batches.files import FileStore
from podium.batches.runner import BatchRunner
from podium.batches.store import BatchStore
from podium.periodic import Periodic
from podium.policy.sealing import sealer_for
from podium.store.tables import SQLExecutor

if TYPE_CHECKING:
    from podium.app import Podium

KEY = "batch_service"


@dataclass(slots=True)
class BatchService:
    store: BatchStore
    runner: BatchRunner
    files: FileStore


def batch_service(podium: Podium) -> BatchService | None:
    """This gateway's batches, built on first use; None when they are off (or the store keeps
    no tables)."""
    service: BatchService | None = podium.extras.get(KEY)
    if service is not None:
        return service
    settings = podium.config.batches
    if not settings.enabled or not isinstance(podium.store, SQLExecutor):
        return None
    master = podium.secrets.get(podium.config.access.secrets.master_key_env)
    store = BatchStore(podium.store, settings, sealer=sealer_for(master, "batches"))
    files = FileStore(podium.store, settings, sealer=sealer_for(master, "batch-files"))
    runner = BatchRunner(store)
    service = podium.extras[KEY] = BatchService(store, runner, files)
    podium.extras["batches"] = store
    podium.extras["batch_runner"] = runner
    podium.extras["batch_files"] = files

    async def sweep() -> int:  # what is past retention: batches with their results, and files
        return await store.sweep() + await files.sweep()

    sweeper = Periodic(sweep, 3600.0, name="batch sweep")

    async def start() -> None:
        runner.start()
        sweeper.start()

    async def stop() -> None:
        await runner.close()
        await sweeper.close()

    podium.app.on_startup.append(start)
    podium.app.on_shutdown.append(stop)
    return service
