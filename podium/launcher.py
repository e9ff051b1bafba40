"""``podium serve --workers N``: N server processes, each with a listening socket of its own.

uvicorn's own supervisor binds one socket and hands it to every process. Whichever process
wakes first then accepts most of a burst: counted during 512 streams opened at once on two
governed processes, one held 388-414 connections and the other 98-124, so one admitted four
fifths of the work while the other idled, and keep-alive clients (a load balancer, wrk) stay
where they first landed. Here every process binds the port itself with ``SO_REUSEPORT``, and
the kernel spreads new connections over the processes evenly.

The parent only supervises: it starts the processes, restarts one that dies, and on SIGINT or
SIGTERM passes the signal on and waits for their graceful shutdown. Where ``SO_REUSEPORT`` is
missing (or the port is 0, which every process would resolve differently) ``podium serve``
uses uvicorn's supervisor instead.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

log = logging.getLogger("podium.launcher")

RESTART_PAUSE = 1.0  # seconds before a process that died is started again


def can_share_port(port: int) -> bool:
    return port != 0 and hasattr(socket, "SO_REUSEPORT")


def listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    """A socket bound to ``host:port`` that other processes may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def serve_one(host: str, port: int, options: dict[str, Any]) -> None:
    """One server process: its own socket on the shared port, one uvicorn server on it."""
    import uvicorn

    config = uvicorn.Config(host=host, port=port, **options)
    server = uvicorn.Server(config)
    server.run(sockets=[listening_socket(host, port, config.backlog)])


@dataclass
class Supervisor:
    host: str
    port: int
    processes: int
    options: dict[str, Any]  # uvicorn.Config keyword arguments (app, factory, log_level, ...)
    grace: float = 30.0  # seconds each process gets to finish its requests on shutdown
    _children: list[BaseProcess] = field(default_factory=list)
    _stopping: bool = False

    def _start(self) -> BaseProcess:
        # spawn, not fork: each process imports Podium afresh, as uvicorn's supervisor does.
        context = multiprocessing.get_context("spawn")
        child = context.Process(
            target=serve_one, args=(self.host, self.port, self.options), daemon=False
        )
        child.start()
        return child

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        # SIGTERM whichever signal came: a process that already has the terminal's SIGINT
        # would take a second SIGINT as "stop now" and skip its graceful shutdown.
        self._stopping = True
        for child in self._children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._stop)
        self._children = [self._start() for _ in range(self.processes)]
        while not self._stopping:
            for index, child in enumerate(self._children):
                if not child.is_alive() and not self._stopping:
                    log.warning(
                        "server process %s ended (exit code %s); starting another",
                        child.pid,
                        child.exitcode,
                    )
                    time.sleep(RESTART_PAUSE)
                    if not self._stopping:
                        self._children[index] = self._start()
            time.sleep(0.2)
        deadline = time.monotonic() + self.grace + 5.0
        for child in self._children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join()
        return 0
