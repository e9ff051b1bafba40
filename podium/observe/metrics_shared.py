"""One ``/metrics`` for every server process of one machine.

``podium serve --workers N`` runs N processes behind one port, and a scrape reaches whichever
answers. So each process writes a snapshot of its series to ``<data_dir>/metrics/<id>.json``
(a whole-file atomic replace) every ``snapshot_interval`` seconds, whenever it answers a
scrape, and when it stops; ``/metrics`` sums the snapshots: counters and histogram buckets of
every process that ever ran on the directory, gauges of the live ones only (summed: calls in
flight and queue depths add up; the breaker gauge counts the processes in each state).

A process holds an exclusive ``flock`` on ``<id>.lock`` while it lives, which the kernel
releases however it ends. A lock that can be taken marks a dead process: its last snapshot is
folded into ``retired.json`` and its files removed, so counters never go backwards when a
process exits, crashes or is replaced, and the directory does not grow with restarts. Folding
runs under a directory lock, and ``retired.json`` lists the ids it holds, so a fold cut short
never counts a process twice.

Counting itself stays in memory on the request path (podium/observe/metrics.py); the files are
written by a timer and at scrape time, in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from podium.observe.metrics import Histogram, Labels, Registry, Snapshot, render

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.metrics")

PROCESSES = "podium_server_processes"
RETIRED = "retired.json"
DIRECTORY_LOCK = "directory.lck"
MAX_FOLDED_IDS = 1000  # ids of folded processes remembered (a fold cut short is retried)


class Exposition(Protocol):
    async def render(self) -> str:
        """The Prometheus text for ``/metrics``."""
        ...


class LocalExposition:
    """This process's series only (one server process, the default)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def render(self) -> str:
        return self.registry.render()


# -- snapshots as JSON --------------------------------------------------------------------------


def _pairs(labels: Labels) -> list[list[str]]:
    return [[name, value] for name, value in labels]


def _labels(raw: Any) -> Labels:
    return tuple((str(name), str(value)) for name, value in raw)


def encode(snapshot: Snapshot, *, gauges: bool = True) -> dict[str, Any]:
    return {
        "counters": {
            name: [[_pairs(labels), value] for labels, value in series.items()]
            for name, series in snapshot.counters.items()
        },
        "histograms": {
            name: [
                [_pairs(labels), list(h.bounds), list(h.counts), h.total, h.count]
                for labels, h in series.items()
            ]
            for name, series in snapshot.histograms.items()
        },
        "gauges": {
            name: [[_pairs(labels), value] for labels, value in series.items()]
            for name, series in (snapshot.gauges.items() if gauges else ())
        },
    }


def decode(data: dict[str, Any]) -> Snapshot:
    snapshot = Snapshot()
    for name, rows in (data.get("counters") or {}).items():
        snapshot.counters[name] = {_labels(labels): float(value) for labels, value in rows}
    for name, rows in (data.get("gauges") or {}).items():
        snapshot.gauges[name] = {_labels(labels): float(value) for labels, value in rows}
    for name, rows in (data.get("histograms") or {}).items():
        snapshot.histograms[name] = {
            _labels(labels): Histogram(
                tuple(float(b) for b in bounds), [int(c) for c in counts], float(total), int(count)
            )
            for labels, bounds, counts, total, count in rows
        }
    return snapshot


def add(into: Snapshot, other: Snapshot, *, gauges: bool) -> None:
    """Sum ``other`` into ``into`` (its gauges too when ``gauges``)."""
    for name, series in other.counters.items():
        target = into.counters.setdefault(name, {})
        for labels, value in series.items():
            target[labels] = target.get(labels, 0.0) + value
    if gauges:
        for name, series in other.gauges.items():
            target = into.gauges.setdefault(name, {})
            for labels, value in series.items():
                target[labels] = target.get(labels, 0.0) + value
    for name, hseries in other.histograms.items():
        htarget = into.histograms.setdefault(name, {})
        for labels, histogram in hseries.items():
            mine = htarget.get(labels)
            counts = histogram.counts or [0] * (len(histogram.bounds) + 1)
            if mine is None:
                htarget[labels] = Histogram(
                    histogram.bounds, list(counts), histogram.total, histogram.count
                )
            elif mine.bounds == histogram.bounds:  # other buckets (another version): not summable
                mine.counts = [a + b for a, b in zip(mine.counts, counts, strict=True)]
                mine.total += histogram.total
                mine.count += histogram.count


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("ignored an unreadable metrics snapshot %s: %s", path.name, error)
        return None
    return data if isinstance(data, dict) else None


def _decoded(data: dict[str, Any], name: str) -> Snapshot | None:
    try:
        return decode(data)
    except (TypeError, ValueError) as error:
        log.warning("ignored a malformed metrics snapshot %s: %s", name, error)
        return None


def _load(path: Path) -> Snapshot | None:
    data = _read(path)
    return None if data is None else _decoded(data, path.name)


def _write(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    os.replace(temporary, path)  # readers see the old file or the new one, never half of one


# -- the processes of one directory -------------------------------------------------------------


class SharedMetrics:
    """This process's part of the shared directory, and the merged exposition."""

    def __init__(self, registry: Registry, directory: Path, *, interval: float) -> None:
        self.registry = registry
        self.directory = directory
        self.interval = interval
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock: int | None = None
        self._timer: asyncio.Task[None] | None = None
        # The timer and a scrape may write this process's file at once, from two threads: the
        # later snapshot must win, or a scrape elsewhere could see a counter go backwards.
        self._taken = 0
        self._written = 0
        self._writing = threading.Lock()
        registry.declare(PROCESSES, "gauge", "Live server processes whose series this answer sums.")

    def _path(self, process: str, suffix: str = ".json") -> Path:
        return self.directory / f"{process}{suffix}"

    @contextlib.contextmanager
    def _directory_locked(self) -> Iterator[None]:
        descriptor = os.open(self.directory / DIRECTORY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def _take(self) -> tuple[int, Snapshot]:
        self._taken += 1
        return self._taken, self.registry.snapshot()

    def _write_own(self, taken: tuple[int, Snapshot]) -> None:
        number, snapshot = taken
        with self._writing:
            if number > self._written:
                _write(self._path(self.id), encode(snapshot))
                self._written = number

    # -- life -------------------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._join, self._take())
        self._timer = asyncio.get_running_loop().create_task(self._tick())

    def _join(self, own: tuple[int, Snapshot]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._directory_locked():  # so no fold sees this lock before it is held
            descriptor = os.open(self._path(self.id, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._lock = descriptor
            self._write_own(own)
            self._fold_dead()  # processes of earlier runs

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self._write_own, self._take())
            except OSError as error:
                log.warning("could not write the metrics snapshot: %s", error)

    async def aclose(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if self._lock is not None:
            await asyncio.to_thread(self._leave, self._take())

    def _leave(self, own: tuple[int, Snapshot]) -> None:
        """Write the final snapshot and fold it into the retired counts at once."""
        self._write_own(own)
        descriptor, self._lock = self._lock, None
        if descriptor is not None:
            os.close(descriptor)  # this process now reads as dead, and is folded below
        with self._directory_locked():
            self._fold_dead()

    # -- merging ----------------------------------------------------------------------------------

    async def render(self) -> str:
        return await asyncio.to_thread(self._merged, self._take())

    def _merged(self, own: tuple[int, Snapshot]) -> str:
        # Written first, so whatever this answer shows, a later scrape by another process
        # (which reads this file) shows at least as much.
        self._write_own(own)
        with self._directory_locked():
            retired, live = self._fold_dead()
            total = Snapshot()
            add(total, retired, gauges=False)
            add(total, own[1], gauges=True)
            for process in live:
                snapshot = _load(self._path(process))
                if snapshot is not None:
                    add(total, snapshot, gauges=True)
        total.gauges[PROCESSES] = {(): float(1 + len(live))}
        return render(self.registry.help, total)

    def _fold_dead(self) -> tuple[Snapshot, list[str]]:
        """The retired counts (with any newly dead process folded in) and the live processes
        other than this one. Runs under the directory lock."""
        data = _read(self.directory / RETIRED) or {}
        retired = _decoded(data, RETIRED) or Snapshot()
        folded = [str(process) for process in data.get("folded") or []]
        live: list[str] = []
        dead: list[tuple[str, int]] = []
        for lock in sorted(self.directory.glob("*.lock")):
            process = lock.name.removesuffix(".lock")
            if process == self.id and self._lock is not None:
                continue  # this process, alive
            try:
                descriptor = os.open(lock, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(descriptor)
                live.append(process)
                continue
            dead.append((process, descriptor))
        if not dead:
            return retired, live
        for process, _ in dead:
            if process not in folded:
                last = _load(self._path(process))
                if last is not None:
                    add(retired, last, gauges=False)
                folded.append(process)
        _write(
            self.directory / RETIRED,
            {**encode(retired, gauges=False), "folded": folded[-MAX_FOLDED_IDS:]},
        )
        for process, descriptor in dead:
            for suffix in (".json", ".json.tmp", ".lock"):  # .tmp: killed while writing
                self._path(process, suffix).unlink(missing_ok=True)
            os.close(descriptor)
        return retired, live


def exposition_for(podium: Podium, registry: Registry) -> Exposition:
    """Shared across the processes of this machine when ``observe.metrics.shared`` says so
    (by default: when ``server.workers`` is more than one)."""
    settings = podium.config.observe.metrics
    shared = settings.shared if settings.shared is not None else podium.config.server.workers > 1
    if not shared:
        return LocalExposition(registry)
    metrics = SharedMetrics(
        registry,
        podium.config.resolved_data_dir() / "metrics",
        interval=settings.snapshot_interval,
    )

    async def close() -> None:
        await podium.gateway.drain_background()  # requests still being counted
        await metrics.aclose()

    podium.app.on_startup.append(metrics.start)
    podium.app.on_shutdown.append(close)
    return metrics
