"""What the access commands share: loading the configuration and opening its key store."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from podium.config import ConfigError, PodiumConfig, load_config
from podium.policy.audit import AuditLog
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


def with_keys(config: PodiumConfig, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def run() -> T:
        if config.store.kind == "sqlite":
            store: SQLiteStore | PostgresStore = SQLiteStore(store_path(config))
        else:  # the shared store replicas use: keys made here are seen by all of them
            assert config.store.url is not None
            store = PostgresStore(config.store.url, schema=config.store.pg_schema, max_size=1)
        await store.open()
        try:
            return await action(KeyStore(store))
        finally:
            await store.close()

    return asyncio.run(run())


def audit_log(config: PodiumConfig) -> AuditLog:
    return AuditLog(config.access.audit_path(config.resolved_data_dir()))


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def seconds(text: str) -> float:
    """``90s``, ``15m``, ``12h``, ``30d`` or ``2w`` as seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 30d, 12h, 15m or 90s")
    return float(match.group(1)) * _SECONDS[match.group(2)]
