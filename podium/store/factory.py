"""The store ``podium.yaml`` names: SQLite by default, PostgreSQL for replicas."""

from __future__ import annotations

from pathlib import Path

from podium.config import StoreConfig
from podium.store.traces import TraceStore


def sqlite_path(config: StoreConfig, data_dir: Path) -> Path:
    if config.url is None:
        return data_dir / "podium.db"
    return Path(config.url.removeprefix("sqlite:///")).expanduser()


def create_store(config: StoreConfig, data_dir: Path) -> TraceStore:
    """A closed store (``await store.open()`` connects and runs the migrations)."""
    if config.kind == "postgres":
        from podium.store.postgres import PostgresStore

        assert config.url is not None  # the config's validator requires it
        return PostgresStore(config.url, schema=config.pg_schema, max_size=config.pool_size)
    from podium.store.sqlite import SQLiteStore

    return SQLiteStore(path=sqlite_path(config, data_dir))
