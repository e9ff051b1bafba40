"""Prometheus metrics, counted by a hook from each finished request's trace and rendered in the
text exposition format at ``/metrics``.

Labels are bounded: each label keeps at most ``max_label_values`` distinct values; later ones
are counted under ``other``, so a flood of new callers cannot grow memory or scrape size.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from podium.context import RequestContext
from podium.hooks import Hook
from podium.store.traces import TraceRecord

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
REQUEST_LABELS = ("worker", "route", "caller", "contract")
BREAKER_STATES = ("closed", "half_open", "open")
OTHER = "other"


class LabelCap:
    """Distinct values per label, first come first kept; the rest become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: dict[str, set[str]] = {}

    def __call__(self, label: str, value: str) -> str:
        seen = self._seen.setdefault(label, set())
        if value in seen:
            return value
        if len(seen) < self.limit:
            seen.add(value)
            return value
        return OTHER


Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in labels]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass(slots=True)
class Snapshot:
    """Every series of a registry at one moment. Counters include collected samples of metrics
    declared as counters; gauges are the rest of the collected samples."""

    counters: dict[str, dict[Labels, float]] = field(default_factory=dict)
    histograms: dict[str, dict[Labels, Histogram]] = field(default_factory=dict)
    gauges: dict[str, dict[Labels, float]] = field(default_factory=dict)


@dataclass(slots=True)
class Counter:
    """One counter series' value: a cell a hook can keep and add to, rather than find its
    label set in a dictionary (hashing nested tuples) on every request."""

    value: float = 0.0


class Registry:
    """Counters, gauges and histograms keyed by name and label set."""

    def __init__(self) -> None:
        self.help: dict[str, tuple[str, str]] = {}  # name -> (type, help)
        self.counters: dict[str, dict[Labels, Counter]] = {}
        self.histograms: dict[str, dict[Labels, Histogram]] = {}
        self.collectors: list[Callable[[], Iterable[tuple[str, Labels, float]]]] = []

    def declare(self, name: str, kind: str, text: str) -> None:
        self.help[name] = (kind, text)

    def counter(self, name: str, labels: Labels) -> Counter:
        """The series' cell, made (at 0) the first time: call it only to add to it, since a
        series exists from then on."""
        series = self.counters.setdefault(name, {})
        cell = series.get(labels)
        if cell is None:
            cell = series[labels] = Counter()
        return cell

    def histogram(self, name: str, labels: Labels) -> Histogram:
        """The series' histogram, made the first time (call it only to observe into it)."""
        series = self.histograms.setdefault(name, {})
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = Histogram(LATENCY_BUCKETS)
        return histogram

    def inc(self, name: str, labels: Labels, amount: float = 1.0) -> None:
        self.counter(name, labels).value += amount

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self.histogram(name, labels).observe(value)

    def snapshot(self) -> Snapshot:
        """A copy, safe to hand to another thread while requests go on counting."""
        snapshot = Snapshot(
            counters={
                name: {labels: cell.value for labels, cell in series.items()}
                for name, series in self.counters.items()
            },
            histograms={
                name: {
                    labels: Histogram(h.bounds, list(h.counts), h.total, h.count)
                    for labels, h in series.items()
                }
                for name, series in self.histograms.items()
            },
        )
        for collect in self.collectors:
            for name, labels, value in collect():
                kind = self.help.get(name, ("gauge", ""))[0]
                target = snapshot.counters if kind == "counter" else snapshot.gauges
                target.setdefault(name, {})[labels] = value
        return snapshot

    def render(self) -> str:
        return render(self.help, self.snapshot())


def render(declared: dict[str, tuple[str, str]], snapshot: Snapshot) -> str:
    """The Prometheus text exposition of the ``declared`` metrics (name -> type, help)."""
    lines: list[str] = []
    for name, (kind, text) in declared.items():
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in sorted(snapshot.counters.get(name, {}).items()):
            lines.append(f"{name}{_labels(labels)} {_number(value)}")
        for labels, value in snapshot.gauges.get(name, {}).items():
            lines.append(f"{name}{_labels(labels)} {_number(value)}")
        for labels, histogram in sorted(snapshot.histograms.get(name, {}).items()):
            running = 0
            for bound, count in zip(
                (*histogram.bounds, float("inf")), histogram.counts, strict=True
            ):
                running += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                bucket = _labels(labels, 'le="' + le + '"')
                lines.append(f"{name}_bucket{bucket} {running}")
            lines.append(f"{name}_sum{_labels(labels)} {_number(histogram.total)}")
            lines.append(f"{name}_count{_labels(labels)} {histogram.count}")
    return "\n".join(lines) + "\n"


KNOWN_SERIES = 4096  # label combinations remembered by the metrics hook


@dataclass(slots=True)
class _Series:
    """One label combination's series. The cells are found in the registry the first time
    each is added to (a series exists only once counted), then kept: counting a request this
    way saves 23k instructions a request (of 34k) over finding each by its labels."""

    labels: Labels
    requests: Labels
    tokens_in: Labels
    tokens_out: Labels
    requests_cell: Counter | None = None
    tokens_in_cell: Counter | None = None
    tokens_out_cell: Counter | None = None
    cost_cell: Counter | None = None
    duration: Histogram | None = None
    ttft: Histogram | None = None


class MetricsHook(Hook):
    """Counts every finished request from its trace (after the answer, off the hot path)."""

    def __init__(self, registry: Registry, cap: LabelCap) -> None:
        self.registry = registry
        self.cap = cap
        self._known: dict[tuple[str | None, ...], _Series] = {}
        # (worker, status) as a step names them -> that worker-calls series' cell
        self._calls: dict[tuple[object, object], Counter] = {}
        declare = registry.declare
        declare("podium_requests_total", "counter", "Requests answered, by outcome.")
        declare("podium_request_errors_total", "counter", "Requests that ended in an error.")
        declare("podium_request_duration_seconds", "histogram", "Request latency.")
        declare("podium_time_to_first_token_seconds", "histogram", "Time to the first token.")
        declare("podium_tokens_total", "counter", "Tokens, by direction (input, output).")
        declare("podium_cost_usd_total", "counter", "Spend in US dollars.")
        declare(
            "podium_prompt_cache_tokens_total",
            "counter",
            "Input tokens the upstream read from (read) or wrote to (write) its prompt cache.",
        )
        declare("podium_worker_calls_total", "counter", "Calls to each worker, by outcome.")
        declare(
            "podium_cache_total",
            "counter",
            "Response cache outcomes (hit, miss, stored, error), from each trace.",
        )

    def _series(self, trace: TraceRecord) -> _Series:
        """The label sets of a trace's series. Capping is settled once per value (a kept value
        stays kept, a capped one stays ``other``), so they are worked out once per combination."""
        key = (trace.worker, trace.route, trace.caller, trace.contract, trace.status)
        series = self._known.get(key)
        if series is None:
            if len(self._known) >= KNOWN_SERIES:
                self._known.clear()  # bounded however many callers come and go
            cap = self.cap
            labels = (
                ("worker", cap("worker", trace.worker or "none")),
                ("route", cap("route", trace.route)),
                ("caller", cap("caller", trace.caller)),
                ("contract", cap("contract", trace.contract or "none")),
            )
            series = self._known[key] = _Series(
                labels,
                (*labels, ("status", trace.status)),
                (*labels, ("direction", "input")),
                (*labels, ("direction", "output")),
            )
        return series

    def _worker_calls(self, worker: object, status: object) -> Counter:
        # Capped once per (worker, status), like the label sets above.
        cell = self._calls.get((worker, status))
        if cell is None:
            if len(self._calls) >= KNOWN_SERIES:
                self._calls.clear()
            labels = (
                ("worker", self.cap("worker", str(worker or "none"))),
                ("status", str(status or "unknown")),
            )
            cell = self._calls[(worker, status)] = self.registry.counter(
                "podium_worker_calls_total", labels
            )
        return cell

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        self.count(trace)

    def count(self, trace: TraceRecord) -> None:
        registry = self.registry
        series = self._series(trace)
        labels = series.labels
        cell = series.requests_cell
        if cell is None:
            cell = series.requests_cell = registry.counter("podium_requests_total", series.requests)
        cell.value += 1.0
        if trace.status == "error":
            kind = self.cap("error_kind", trace.error_kind or "unknown")
            registry.inc("podium_request_errors_total", (*labels, ("kind", kind)))
        duration = series.duration
        if duration is None:
            duration = series.duration = registry.histogram(
                "podium_request_duration_seconds", labels
            )
        duration.observe(trace.latency_ms / 1000)
        if trace.ttft_ms is not None:
            ttft = series.ttft
            if ttft is None:
                ttft = series.ttft = registry.histogram(
                    "podium_time_to_first_token_seconds", labels
                )
            ttft.observe(trace.ttft_ms / 1000)
        if trace.input_tokens:
            cell = series.tokens_in_cell
            if cell is None:
                cell = series.tokens_in_cell = registry.counter(
                    "podium_tokens_total", series.tokens_in
                )
            cell.value += trace.input_tokens
        if trace.output_tokens:
            cell = series.tokens_out_cell
            if cell is None:
                cell = series.tokens_out_cell = registry.counter(
                    "podium_tokens_total", series.tokens_out
                )
            cell.value += trace.output_tokens
        if trace.cost_usd:
            cell = series.cost_cell
            if cell is None:
                cell = series.cost_cell = registry.counter("podium_cost_usd_total", labels)
            cell.value += trace.cost_usd
        for action in trace.policy_actions:
            if action.startswith("cache:"):  # hit, miss, stored, error: a bounded set
                registry.inc("podium_cache_total", (("result", action[6:]),))
        for step in trace.steps:
            if step.get("role") == "cache":
                continue  # answered from the response cache: no call to the worker
            self._worker_calls(step.get("worker"), step.get("status")).value += 1.0
            if "cache_read_tokens" in step or "cache_write_tokens" in step:
                self._prompt_cache(step)

    def _prompt_cache(self, step: dict[str, Any]) -> None:
        worker = ("worker", self.cap("worker", str(step.get("worker") or "none")))
        for key, kind in (("cache_read_tokens", "read"), ("cache_write_tokens", "write")):
            tokens = step.get(key)
            if tokens:
                labels = (worker, ("kind", kind))
                self.registry.inc("podium_prompt_cache_tokens_total", labels, float(tokens))


def breaker_gauges(
    states: Callable[[], Iterable[tuple[str, str]]],
) -> Callable[[], list[tuple[str, Labels, float]]]:
    """One-hot gauge per worker and state (1 for the state the breaker is in)."""

    def collect() -> list[tuple[str, Labels, float]]:
        out: list[tuple[str, Labels, float]] = []
        for worker, state in states():
            for candidate in BREAKER_STATES:
                labels = (("worker", worker), ("state", candidate))
                out.append(("podium_circuit_breaker_state", labels, float(state == candidate)))
        return out

    return collect
