"""OpenTelemetry spans with the GenAI semantic conventions, one per request and one per
worker call, built from the finished trace (after the answer; nothing on the hot path).

Imported only when ``observe.otel.endpoint`` is set (or by tests with their own provider):
the gateway never loads OpenTelemetry otherwise. Needs the ``otel`` extra.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from podium.config import WorkerConfig
from podium.context import RequestContext
from podium.hooks import Hook
from podium.observe.settings import OTelConfig
from podium.store.traces import TraceRecord

NS = 1_000_000  # nanoseconds per millisecond


def provider_for(config: OTelConfig) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(resource=Resource.create({"service.name": config.service_name}))
    exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=config.headers or None)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


# The GenAI semantic conventions' operation per ingress; every other ingress is a chat.
OPERATIONS = {"embeddings": "embeddings"}
# A step's prompt-cache counts (present when the upstream cached) as GenAI attributes; both
# are part of gen_ai.usage.input_tokens, as the conventions ask.
CACHE_ATTRIBUTES = (
    ("cache_read_tokens", "gen_ai.usage.cache_read.input_tokens"),
    ("cache_write_tokens", "gen_ai.usage.cache_creation.input_tokens"),
)


class OTelHook(Hook):
    def __init__(
        self, provider: TracerProvider, workers: Callable[[str], WorkerConfig | None]
    ) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("podium")
        self._workers = workers

    async def finish(self, trace: TraceRecord, context: RequestContext) -> None:
        self.emit(trace)

    def emit(self, trace: TraceRecord) -> None:
        start = int(trace.created_at * 1e9)
        end = start + int(trace.latency_ms * NS)
        operation = OPERATIONS.get(trace.ingress, "chat")
        root = self.tracer.start_span(
            f"{operation} {trace.requested_model}",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": trace.requested_model,
                "podium.trace_id": trace.trace_id,
                "podium.route": trace.route,
                "podium.caller": trace.caller,
                "podium.data_class": trace.data_class,
                "podium.cost_usd": trace.cost_usd,
                "gen_ai.usage.input_tokens": trace.input_tokens,
                "gen_ai.usage.output_tokens": trace.output_tokens,
                **({"podium.contract": trace.contract} if trace.contract else {}),
                **({"gen_ai.response.model": trace.worker} if trace.worker else {}),
                **({"podium.router": trace.router} if trace.router else {}),
            },
        )
        if trace.status == "error":
            root.set_attribute("error.type", trace.error_kind or "error")
            root.set_status(Status(StatusCode.ERROR, trace.error or None))
        parent = _context_of(root)
        # Steps carry durations, not start times: place them one after another from the start.
        offset = start
        for step in trace.steps:
            name = str(step.get("worker") or "unknown")
            worker = self._workers(name)
            latency = int(float(step.get("latency_ms") or 0.0) * NS)
            attributes: dict[str, str | int | float] = {
                "gen_ai.operation.name": operation,
                "gen_ai.request.model": worker.model if worker else name,
                "gen_ai.response.model": worker.model if worker else name,
                "gen_ai.usage.input_tokens": int(step.get("input_tokens") or 0),
                "gen_ai.usage.output_tokens": int(step.get("output_tokens") or 0),
                "podium.worker": name,
                "podium.step": int(step.get("step") or 0),
                "podium.step.role": str(step.get("role") or "answer"),
                "podium.cost_usd": float(step.get("cost_usd") or 0.0),
            }
            for key, attribute in CACHE_ATTRIBUTES:
                if step.get(key):
                    attributes[attribute] = int(step[key])
            if worker is not None:
                attributes["gen_ai.provider.name"] = worker.provider
                attributes["gen_ai.system"] = worker.provider
                if worker.base_url:
                    parts = urlsplit(worker.base_url)
                    attributes["server.address"] = parts.hostname or ""
                    if parts.port:
                        attributes["server.port"] = parts.port
            span = self.tracer.start_span(
                f"{operation} {attributes['gen_ai.request.model']}",
                context=parent,
                kind=SpanKind.CLIENT,
                start_time=offset,
                attributes=attributes,
            )
            if step.get("status") != "ok":
                span.set_attribute("error.type", str(step.get("error_kind") or "error"))
                span.set_status(Status(StatusCode.ERROR))
            offset += latency
            span.end(end_time=offset)
        root.end(end_time=max(end, offset))

    def close(self) -> None:
        self.provider.shutdown()


def _context_of(span: Span) -> Context:
    return set_span_in_context(span)
