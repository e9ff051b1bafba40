"""The observability plugin: feedback API and signals, rollups for the dashboard, retention,
Prometheus metrics, OpenTelemetry (when configured), the judge (when configured), and the
dashboard itself. Listed in podium.plugins.BUILTIN_PLUGINS."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

from podium.context import RequestContext
from podium.hooks import Hook
from podium.observe.feedback import EXTENSION_KEY, Feedback, Rows
from podium.observe.metrics import LabelCap, MetricsHook, Registry, breaker_gauges
from podium.observe.retention import Retention
from podium.observe.rollup import RollupStore
from podium.store.traces import TraceRecord

if TYPE_CHECKING:
    from podium.app import Podium

log = logging.getLogger("podium.observe")

# A tuple, not ``bool | int | float | str`` written in the call, which builds the union anew
# for every step of every trace.
VERDICT_TYPES = (bool, int, float, str)


class SignalsHook(Hook):
    """Remembers finished traces (so feedback for one not yet flushed is accepted) and turns
    verifier verdicts in workflow steps (a step dict with a ``verdict``) into signals."""

    def __init__(self, feedback: Feedback) -> None:
        self.feedback = feedback

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        self.feedback.saw_trace(trace.trace_id, trace.worker, trace.route)
        for step in trace.steps:
            verdict = step.get("verdict")
            if verdict is not None and isinstance(verdict, VERDICT_TYPES):
                try:
                    self.feedback.record(
                        trace.trace_id,
                        str(step.get("role") or "verifier"),
                        verdict,
                        source="verifier",
                        comment=str(step.get("worker") or "") or None,
                    )
                except Exception:
                    log.warning("ignored an unreadable verdict on trace %s", trace.trace_id)


def _rows(podium: Podium) -> Rows:
    if not callable(getattr(podium.store, "execute", None)):
        raise TypeError("the observability plugin needs a store with execute(sql, params)")
    return cast(Rows, podium.store)


def register_app(podium: Podium) -> None:
    from podium.api import dashboard
    from podium.api import feedback as feedback_api

    config = podium.config.observe
    rows = _rows(podium)
    podium.gateway.capture_content = config.capture_content
    # Every batch the trace writer stores also updates the dashboard's rollup.
    podium.recorder.store = RollupStore(podium.recorder.store)

    # Remember as many finished traces as can be waiting for the trace writer: its queue
    # limit and the batch it is writing. Older ones are in the store, which answers for them.
    store = podium.config.store
    feedback = Feedback(rows, config.feedback, recent=store.queue_limit + store.batch_size)
    podium.extras[EXTENSION_KEY] = feedback
    podium.hooks.append(SignalsHook(feedback))
    feedback_api.register(podium, feedback)
    retention = Retention(rows, config.retention)
    closers: list[Any] = []

    if config.metrics.enabled:
        registry = Registry()
        podium.hooks.append(MetricsHook(registry, LabelCap(config.metrics.max_label_values)))
        _gauges(podium, registry, feedback)
        from podium.api.http import Response
        from podium.observe.metrics_shared import exposition_for

        exposition = exposition_for(podium, registry)  # this process, or all on this machine

        async def metrics(_: Any) -> Response:
            return Response(
                (await exposition.render()).encode(),
                media_type="text/plain; version=0.0.4; charset=utf-8",
            )

        podium.app.route("GET", config.metrics.path, metrics, podium.app.fallback_errors)

    if config.otel.endpoint:
        from podium.observe.otel import OTelHook, provider_for

        otel = OTelHook(provider_for(config.otel), _worker_lookup(podium))
        podium.hooks.append(otel)
        closers.append(otel.close)

    if config.judge.worker:
        from podium.observe.judge import JudgeHook

        judge = JudgeHook(
            podium.engine,
            podium.gateway,
            feedback,
            config.judge,
            # The data policy registers after this plugin: its classes are read when needed.
            classes=lambda: podium.extras.get("data_classes"),
        )
        podium.hooks.append(judge)
        closers.append(judge.close)

    if config.dashboard.enabled:
        dashboard.register(podium, rows)

    async def startup() -> None:
        feedback.start()
        retention.start()

        # Registered now, after the app's own shutdown: shutdown runs in reverse, so this runs
        # first and writes queued signals while the store is still open.
        async def shutdown() -> None:
            await podium.gateway.drain_background()
            # Last registered, first closed: the judge's last calls still emit their spans.
            for close in reversed(closers):
                result = close()
                if result is not None:
                    await result
            await retention.close()
            await feedback.close()

        podium.app.on_shutdown.append(shutdown)

    podium.app.on_startup.append(startup)


def _worker_lookup(podium: Podium) -> Any:
    def lookup(name: str) -> Any:
        worker = podium.pool.get(name)
        return worker.config if worker is not None else None

    return lookup


def _gauges(podium: Podium, registry: Registry, feedback: Feedback) -> None:
    declare = registry.declare
    declare("podium_circuit_breaker_state", "gauge", "1 for the state each worker's breaker is in.")
    declare("podium_worker_in_flight", "gauge", "Calls in flight per worker.")
    declare(
        "podium_worker_capacity_refused_total",
        "counter",
        "Calls a worker had no room for within their wait (its limits, or an upstream 429).",
    )
    declare(
        "podium_worker_capacity_waited_total",
        "counter",
        "Calls that waited for room on a worker (its limits, or an upstream 429).",
    )
    declare(
        "podium_worker_slots",
        "gauge",
        "A worker's concurrency limit: its limits.concurrency, or the one learned (adaptive).",
    )
    declare(
        "podium_worker_slots_in_use",
        "gauge",
        "Slots of a worker's limits.concurrency held, per priority.",
    )
    declare("podium_trace_queue_depth", "gauge", "Traces waiting for the trace writer.")
    declare("podium_traces_written_total", "counter", "Traces the writer has stored.")
    declare("podium_traces_spilled_total", "counter", "Traces spilled to disk (store down).")
    declare("podium_feedback_queue_depth", "gauge", "Automatic signals waiting to be stored.")
    declare("podium_feedback_refused_total", "counter", "Feedback refused with 429.")
    declare("podium_responses_kept_total", "counter", "Responses API answers stored.")
    declare(
        "podium_responses_keep_failures_total",
        "counter",
        "Answers or conversation turns the store could not take (sent anyway).",
    )
    declare(
        "podium_responses_continued_total",
        "counter",
        "Requests that read a stored response chain or conversation back.",
    )
    declare("podium_responses_background_total", "counter", "Background responses started.")
    declare(
        "podium_batch_requests_answered_total",
        "counter",
        "Requests of message batches this process has answered (any result).",
    )
    declare(
        "podium_responses_background_running",
        "gauge",
        "Background responses this process is running.",
    )
    declare(
        "podium_documents_total",
        "counter",
        "Attached PDFs by outcome: read (by a reader process), remembered (read before), "
        "unreadable (refused, timeouts included).",
    )
    declare("podium_document_pages_read_total", "counter", "Pages of PDFs read.")
    declare(
        "podium_document_readers_killed_total",
        "counter",
        "PDF reader processes killed past documents.read_timeout_seconds.",
    )

    registry.collectors.append(
        breaker_gauges(lambda: [(w.name, w.breaker.state) for w in podium.pool])
    )

    def collect() -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
        recorder = podium.recorder
        out: list[tuple[str, tuple[tuple[str, str], ...], float]] = [
            ("podium_worker_in_flight", (("worker", w.name),), float(w.in_flight))
            for w in podium.pool
        ]
        for w in podium.pool:
            room, worker = w.capacity, (("worker", w.name),)
            if not room.limited and not room.refused and not room.waited:
                continue  # a worker without limits that never rested: nothing to say
            out += [
                ("podium_worker_capacity_refused_total", worker, float(room.refused)),
                ("podium_worker_capacity_waited_total", worker, float(room.waited)),
            ]
            if room.slots is not None:
                background = room.background_in_use
                out += [
                    ("podium_worker_slots", worker, float(room.slots)),
                    (
                        "podium_worker_slots_in_use",
                        (*worker, ("priority", "interactive")),
                        float(room.in_use - background),
                    ),
                    (
                        "podium_worker_slots_in_use",
                        (*worker, ("priority", "background")),
                        float(background),
                    ),
                ]
        out += [
            ("podium_trace_queue_depth", (), float(recorder.depth)),
            ("podium_traces_written_total", (), float(recorder.written)),
            ("podium_traces_spilled_total", (), float(recorder.spilled)),
            ("podium_feedback_queue_depth", (), float(feedback.depth)),
            ("podium_feedback_refused_total", (), float(feedback.refused)),
        ]
        kept = podium.extras.get("responses_counts")  # None: responses.store is off
        if kept is not None:
            out += [
                ("podium_responses_kept_total", (), float(kept.kept)),
                ("podium_responses_keep_failures_total", (), float(kept.keep_failures)),
                ("podium_responses_continued_total", (), float(kept.continued)),
            ]
        batches = podium.extras.get("batch_runner")  # None: batches are off
        if batches is not None:
            out.append(("podium_batch_requests_answered_total", (), float(batches.answered)))
        documents = getattr(podium.extras.get("documents"), "readers", None)
        if documents is not None and (documents.counts.read or documents.counts.remembered):
            counts = documents.counts
            out += [
                ("podium_documents_total", (("result", "read"),), float(counts.read)),
                ("podium_documents_total", (("result", "remembered"),), float(counts.remembered)),
                ("podium_documents_total", (("result", "unreadable"),), float(counts.unreadable)),
                ("podium_document_pages_read_total", (), float(counts.pages)),
                ("podium_document_readers_killed_total", (), float(counts.killed)),
            ]
        runs = podium.extras.get("responses_runs")
        if runs is not None:
            out += [
                ("podium_responses_background_total", (), float(runs.started)),
                ("podium_responses_background_running", (), float(len(runs.runs))),
            ]
        return out

    registry.collectors.append(collect)
