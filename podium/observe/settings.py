"""The ``observe:`` section of podium.yaml: traces, feedback, metrics, OpenTelemetry, judge,
dashboard. Only pydantic and the standard library here: config.py imports this module."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetentionConfig(_Strict):
    days: float | None = Field(30.0, gt=0)  # None keeps traces and feedback forever
    interval_seconds: float = Field(3600.0, gt=0)  # how often the sweep runs
    batch: int = Field(5000, ge=1)  # rows deleted per statement, so writers never wait long


class FeedbackConfig(_Strict):
    rate_per_second: float = Field(20.0, gt=0)  # per caller, sustained
    burst: int = Field(100, ge=1)  # per caller, at once
    max_pending: int = Field(64, ge=1)  # feedback writes in flight across all callers
    max_comment_chars: int = Field(4000, ge=0)


class MetricsConfig(_Strict):
    enabled: bool = True
    path: str = "/metrics"
    max_label_values: int = Field(50, ge=1)  # per label; later values are counted as "other"
    # Sum the series of every server process on this machine (podium serve --workers N) through
    # snapshots in <data_dir>/metrics; None: when server.workers is more than one.
    shared: bool | None = None
    snapshot_interval: float = Field(5.0, gt=0)  # seconds between a process's snapshots


class OTelConfig(_Strict):
    endpoint: str | None = None  # OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces
    service_name: str = "podium"
    headers: dict[str, str] = Field(default_factory=dict)


class JudgeConfig(_Strict):
    worker: str | None = None  # the worker asked to grade answers 1-5; None turns the judge off
    sample_rate: float = Field(0.05, ge=0, le=1)
    max_pending: int = Field(8, ge=1)  # judge calls in flight; further samples are skipped


class DashboardConfig(_Strict):
    enabled: bool = True
    max_range_days: float = Field(90.0, gt=0)  # longer ranges are clamped to this
    max_buckets: int = Field(120, ge=10)  # points per time series
    max_rows: int = Field(500, ge=1)  # rows any list endpoint returns
    baseline: str | None = None  # worker the savings are measured against (default: dearest)


class ObserveConfig(_Strict):
    capture_content: bool = False  # keep prompt and answer text in traces (off: privacy)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    feedback: FeedbackConfig = Field(default_factory=FeedbackConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    otel: OTelConfig = Field(default_factory=OTelConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
