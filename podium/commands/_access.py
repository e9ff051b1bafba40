"""What the access commands share: loading the configuration and opening its key store."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from podium.config import ConfigError, PodiumConfig, load_config
from podium.policy.audit import AuditLog, Pending
from podium.policy.audit_store import StoreAuditSink
from podium.policy.keys import KeyStore
from podium.store.postgres import PostgresStore
from podium.store.sqlite import SQLiteStore

T = TypeVar("T")

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="podium.yaml to use (default: $PODIUM_CONFIG, ./podium.yaml, or embedded defaults).",
)


def load(config_path: str | None) -> PodiumConfig:
    try:
        return load_config(config_path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def store_path(config: PodiumConfig) -> Path:
    if config.store.kind != "sqlite":
        raise click.ClickException(
            f"store kind {config.store.kind!r}: these commands work offline on SQLite stores "
            "only; use the admin API (/admin/keys) of a running gateway instead"
        )
    if config.store.url is None:
        return config.resolved_data_dir() / "podium.db"
    return Path(config.store.url.removeprefix("sqlite:///")).expanduser()


def with_store(
    config: PodiumConfig, action: Callable[[SQLiteStore | PostgresStore], Awaitable[T]]
) -> T:
    """Run ``action`` on the configured store, opened (migrations run) and closed around it."""

    async def run() -> T:
        if config.store.kind == "sqlite":
            store: SQLiteStore | PostgresStore = SQLiteStore(store_path(config))
        else:  # the shared store replicas use: changes made here are seen by all of them
            assert config.store.url is not None
            store = PostgresStore(config.store.url, schema=config.store.pg_schema, max_size=1)
        await store.open()
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def with_keys(config: PodiumConfig, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    return with_store(config, lambda store: action(KeyStore(store)))


class StoreAppender:
    """The CLI's entries for the store backend: one chain per host, ``cli:<host>``; two
    commands racing for a position re-chain and try again (the table refuses a fork)."""

    def __init__(self, config: PodiumConfig) -> None:
        self.config = config

    def append(
        self, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> None:
        pending = [Pending(actor, action, target, details or {})]

        async def write(store: SQLiteStore | PostgresStore) -> None:
            sink = StoreAuditSink(store, f"cli:{socket.gethostname()}")
            for attempt in range(5):
                try:
                    await sink.write(pending)
                    return
                except Exception:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.05 * (attempt + 1))

        with_store(self.config, write)


def audit_log(config: PodiumConfig) -> AuditLog | StoreAppender:
    """Where the CLI appends its entries: the backend ``access.audit`` names."""
    if config.access.audit.backend == "store":
        return StoreAppender(config)
    return AuditLog(config.access.audit_path(config.resolved_data_dir()))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d`` or ``2w`` as seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 30d, 12h, 15m or 90s")
    return float(match.group(1)) * _SECONDS[match.group(2)]
