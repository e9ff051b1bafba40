"""The real PostgreSQL (127.0.0.1:5432, trust auth, database ``test``) and Redis
(127.0.0.1:6379) the scale-out tests use. With CI=true they must be there (the tests fail
rather than skip); elsewhere the tests skip, naming what is missing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_USER = os.environ.get("PGUSER", "postgres")
PG_URL = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _skip_unless(available: bool, reason: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not available and os.environ.get("CI") != "true",
        reason=f"{reason} (these tests always run when CI=true)",
    )


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


needs_postgres = _skip_unless(
    listening(PG_HOST, PG_PORT) and _importable("psycopg_pool"),
    f"no PostgreSQL on {PG_HOST}:{PG_PORT} or psycopg not installed (pip install -e '.[postgres]')",
)
needs_redis = _skip_unless(
    listening(REDIS_HOST, REDIS_PORT) and _importable("redis"),
    f"no Redis on {REDIS_HOST}:{REDIS_PORT} or the redis client not installed",
)


def unique(prefix: str) -> str:
    """A name no parallel run uses: schemas and Redis key prefixes per test."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


async def drop_schema(schema: str) -> None:
    from psycopg import AsyncConnection

    async with await AsyncConnection.connect(PG_URL, autocommit=True) as connection:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def drop_redis_prefix(prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


# -- gateway replicas as separate processes ---------------------------------------------------


class Replica:
    """One ``podium serve`` process on a port of its own."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        processes: int = 1,
        log_level: str = "warning",
    ) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "podium.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.processes = processes
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, wait: float = 60.0) -> Replica:
        env = {
            k: v for k, v in os.environ.items() if k not in ("PODIUM_ADMIN_KEY", "PODIUM_CONFIG")
        }
        log = (self.workdir / "serve.log").open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 (returns at once)
            [str(Path(sys.executable).with_name("podium")), "serve",
             "--config", str(self.config_path), "--port", str(self.port),
             "--workers", str(self.processes), "--log-level", self.log_level],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + wait
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"replica exited: {self.log()[-2000:]}")
                try:
                    async with session.get(f"{self.url}/health") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"replica did not start: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM, wait: float = 30.0) -> int | None:
        if self.process is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        deadline = time.monotonic() + wait
        while self.process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        return self.process.returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Forwarder:
    """A TCP relay to a server that a test can cut (every connection dropped, the port
    closed) and restore, to play a database going away and coming back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> Forwarder:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            await server.wait_closed()

    async def restore(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.cut()
