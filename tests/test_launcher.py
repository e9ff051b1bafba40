"""``podium serve --workers N`` with a listening socket per process: connections are spread
over the processes by the kernel, a process that dies is replaced, and SIGTERM stops them all
gracefully."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from podium.launcher import can_share_port
from tests.conftest import worker
from tests.shared_servers import Replica

pytestmark = pytest.mark.skipif(
    not can_share_port(1), reason="this platform has no SO_REUSEPORT: uvicorn's supervisor is used"
)


def server_processes(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    # The spawn start method adds a resource tracker: the servers are the ones listening.
    return [int(pid) for pid in children if socket_inodes(int(pid))]


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def established_to(port: int) -> dict[str, int]:
    """inode -> 1 for every established TCP connection whose local port is ``port``."""
    found: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                found[fields[9]] = 1
    return found


async def hold_connections(url: str, count: int, started: asyncio.Event) -> None:
    """``count`` connections opened at once, each kept open with a request in flight."""
    readers_writers = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1])) for _ in range(count))
    )
    started.set()
    await asyncio.sleep(1.0)
    for _, writer in readers_writers:
        writer.close()


def gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text()


@pytest.fixture
async def two_processes(tmp_path: Path) -> AsyncIterator[Replica]:
    config = {
        "data_dir": str(tmp_path / "data"),
        "workers": [worker("w", "openai", "http://127.0.0.1:9")],
    }
    replica = await Replica(config, tmp_path, processes=2).start()
    # Both processes listening (a connection only reaches a process whose socket is bound).
    deadline = time.monotonic() + 60
    parent = replica.process.pid  # type: ignore[union-attr]
    while len(server_processes(parent)) < 2 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    yield replica
    await replica.stop()


async def test_a_burst_of_connections_is_spread_over_both_processes(two_processes: Replica) -> None:
    parent = two_processes.process.pid  # type: ignore[union-attr]
    started = asyncio.Event()
    holding = asyncio.create_task(hold_connections(two_processes.url, 64, started))
    await started.wait()
    await asyncio.sleep(0.3)  # let both processes accept
    established = established_to(two_processes.port)
    per_process = [len(socket_inodes(pid) & established.keys()) for pid in server_processes(parent)]
    await holding
    assert len(per_process) == 2 and sum(per_process) == 64
    # A kernel hash over 64 connections: fewer than 16 on one side happens ~3 times in 10^5.
    assert min(per_process) >= 16, per_process


async def test_a_process_that_dies_is_replaced_and_the_port_keeps_answering(
    two_processes: Replica,
) -> None:
    parent = two_processes.process.pid  # type: ignore[union-attr]
    first, second = server_processes(parent)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = server_processes(parent)
        if len(now) == 2 and first not in now:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail(f"no replacement for process {first}: {two_processes.log()[-2000:]}")
    assert second in server_processes(parent)
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # fresh connections, spread over both
            async with session.get(
                f"{two_processes.url}/health", headers={"connection": "close"}
            ) as response:
                assert response.status == 200


async def test_sigterm_stops_every_process_gracefully(two_processes: Replica) -> None:
    parent = two_processes.process.pid  # type: ignore[union-attr]
    children = server_processes(parent)
    assert await two_processes.stop(signal.SIGTERM) == 0
    assert all(gone(pid) for pid in children)
