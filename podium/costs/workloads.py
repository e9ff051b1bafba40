"""Workloads: what a company asks of models, how often, how big, how well it must be done and
on what data. Read from a workloads YAML file, or built from a usage export (usage.py) or from
Podium's own traces (here)."""

from __future__ import annotations

import bisect
import re
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from podium.store.traces import COLUMNS, JSON_COLUMNS, TraceRecord

QUALITY_LEVELS: dict[str, float] = {"low": 0.6, "medium": 0.75, "high": 0.9}
GRADES_BY_NAME: dict[str, int] = {"low": 1, "medium": 2, "high": 3}
MAX_INPUT_TOKENS = 2_000_000  # per request: past any model's context window
MAX_OUTPUT_TOKENS = 200_000
MAX_REQUESTS_PER_DAY = 100_000_000


class WorkloadError(Exception):
    """A workload source that cannot be used; the message names the file and the reason."""


def need_grade(quality: float) -> str:
    """The capability grade a quality target asks for."""
    return "high" if quality >= 0.85 else "medium" if quality >= 0.7 else "low"


@dataclass(frozen=True, slots=True)
class SizeBand:
    """The requests whose prompts lie between two long-prompt thresholds of the price table
    (past ``above``, not past the next): a tier prices a whole request by its own input, so
    requests on either side of a threshold are priced apart, not at their common mean."""

    above: int  # 0 for the band below every threshold
    share: float  # of the requests (or of one model's calls)
    input_tokens: float  # mean per request in the band
    output_tokens: float
    cached_tokens: float = 0.0


@dataclass(slots=True)
class BandTally:
    """Requests and token totals per size band, as requests are read; ``bands()`` gives the
    mix. Without thresholds it keeps nothing, and the means are all there is."""

    thresholds: Sequence[int] = ()
    totals: dict[int, list[float]] = field(default_factory=dict)  # band -> [n, in, out, cached]

    def add(
        self, requests: float, input_tokens: float, output_tokens: float, cached: float = 0.0
    ) -> None:
        """``requests`` requests of one size (a usage row may total several) and their tokens."""
        if not self.thresholds or requests <= 0:
            return
        band = bisect.bisect_left(self.thresholds, input_tokens / requests)  # thresholds passed
        total = self.totals.setdefault(band, [0.0, 0.0, 0.0, 0.0])
        total[0] += requests
        total[1] += input_tokens
        total[2] += output_tokens
        total[3] += cached

    def bands(self) -> tuple[SizeBand, ...]:
        """Empty when every request falls in one band: its mean is then in that band too, and
        prices exactly as the requests do."""
        if len(self.totals) < 2:
            return ()
        count = sum(total[0] for total in self.totals.values())
        return tuple(
            SizeBand(
                above=self.thresholds[band - 1] if band else 0,
                share=n / count,
                input_tokens=tokens_in / n,
                output_tokens=tokens_out / n,
                cached_tokens=cached / n,
            )
            for band, (n, tokens_in, tokens_out, cached) in sorted(self.totals.items())
        )


@dataclass(slots=True)
class ModelUse:
    """What one model did for a workload: totals over the workload's ``basis`` requests."""

    model: str
    calls: float
    input_tokens: float
    output_tokens: float
    cached_tokens: float = 0.0
    batch_calls: float = 0.0
    bands: tuple[SizeBand, ...] = ()  # its calls by size, when they straddle a threshold


@dataclass(slots=True)
class Workload:
    name: str
    requests_per_day: float
    input_tokens: float  # mean per request
    output_tokens: float
    cached_tokens: float = 0.0
    quality: float = QUALITY_LEVELS["medium"]
    quality_source: str = "stated"  # stated | inferred
    data_class: str = "internal"
    data_class_source: str = "stated"
    task: str = "general"
    features: set[str] = field(default_factory=set)
    sample_prompts: list[str] = field(default_factory=list)
    current: list[ModelUse] = field(default_factory=list)  # what ran, if known
    basis: float = 1.0  # the number of requests ``current`` totals describe
    observed_requests: float | None = None  # over the observed period, for usage and traces
    max_input_tokens: float = 0.0
    batch_share: float = 0.0
    description: str = ""
    # Its requests by size when they straddle a long-prompt threshold (usage and traces);
    # empty, every request is priced at the mean sizes above.
    bands: tuple[SizeBand, ...] = ()

    @property
    def need(self) -> str:
        return need_grade(self.quality)

    def above(self, threshold: int) -> float:
        """The share of its requests whose prompts pass ``threshold`` tokens, as far as known:
        from its size bands, else from its mean."""
        if self.bands:
            return sum(band.share for band in self.bands if band.above >= threshold)
        return 1.0 if self.input_tokens > threshold else 0.0

    def current_models(self) -> list[str]:
        return [use.model for use in self.current]


@dataclass(slots=True)
class WorkloadSet:
    workloads: list[Workload]
    source: str
    kind: str  # workloads | usage | traces
    days_per_year: float = 365.0
    period_days: float | None = None  # the span a usage export or trace window covers
    organisation: str = ""
    description: str = ""
    rows: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)
    warnings: list[str] = field(default_factory=list)

    def annual_requests(self, workload: Workload) -> float:
        return workload.requests_per_day * self.days_per_year


# -- the workloads YAML file --------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WorkloadEntry(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    requests_per_day: float = Field(ge=0, le=MAX_REQUESTS_PER_DAY)
    input_tokens: float = Field(ge=0, le=MAX_INPUT_TOKENS)
    output_tokens: float = Field(ge=0, le=MAX_OUTPUT_TOKENS)
    cached_input_tokens: float = Field(0, ge=0, le=MAX_INPUT_TOKENS)
    quality: Literal["low", "medium", "high"] | float = "medium"
    data_class: str = "internal"
    task: str = "general"
    current_model: str | None = None
    features: list[str] = Field(default_factory=list)
    sample_prompts: list[str] = Field(default_factory=list)
    batch_share: float = Field(0, ge=0, le=1)

    def quality_value(self) -> float:
        if isinstance(self.quality, str):
            return QUALITY_LEVELS[self.quality]
        if not 0 <= self.quality <= 1:
            raise ValueError("quality must be low, medium, high or a number from 0 to 1")
        return float(self.quality)


class WorkloadFile(_Strict):
    organisation: str = ""
    description: str = ""
    days_per_year: float = Field(365, gt=0, le=366)
    workloads: list[WorkloadEntry] = Field(min_length=1)


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid workloads file"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def read_workload_file(path: Path) -> WorkloadSet:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise WorkloadError(f"{path}: not valid YAML: {error}") from None
    if loaded is None:
        raise WorkloadError(f"{path}: the file is empty; it needs a `workloads:` list")
    if not isinstance(loaded, dict):
        raise WorkloadError(f"{path}: the top level must be a mapping with a `workloads:` list")
    try:
        data = WorkloadFile.model_validate(loaded)
        qualities = [entry.quality_value() for entry in data.workloads]
    except ValidationError as error:
        raise WorkloadError(_describe(error, str(path))) from None
    except ValueError as error:
        raise WorkloadError(f"{path}: {error}") from None
    names = [entry.name for entry in data.workloads]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise WorkloadError(f"{path}: workload names must be unique; repeated: {repeated}")
    workloads = []
    for entry, quality in zip(data.workloads, qualities, strict=True):
        current = []
        if entry.current_model:
            current.append(
                ModelUse(
                    entry.current_model,
                    1.0,
                    entry.input_tokens,
                    entry.output_tokens,
                    entry.cached_input_tokens,
                    entry.batch_share,
                )
            )
        workloads.append(
            Workload(
                name=entry.name,
                description=entry.description,
                requests_per_day=entry.requests_per_day,
                input_tokens=entry.input_tokens,
                output_tokens=entry.output_tokens,
                cached_tokens=entry.cached_input_tokens,
                quality=quality,
                data_class=entry.data_class,
                task=entry.task,
                features=set(entry.features),
                sample_prompts=list(entry.sample_prompts),
                current=current,
                max_input_tokens=entry.input_tokens,
                batch_share=entry.batch_share,
            )
        )
    return WorkloadSet(
        workloads=workloads,
        source=str(path),
        kind="workloads",
        days_per_year=data.days_per_year,
        organisation=data.organisation,
        description=data.description,
    )


# -- what prompts say about a workload -------------------------------------------------------------

TASK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (task, re.compile(pattern, re.IGNORECASE))
    for task, pattern in (
        (
            "code",
            r"```|\bdef \w+\(|\bfunction\b|\bSQL\b|\bscripts?\b|\bPLC\b|structured text|"
            r"ladder logic|\bVBA\b|\bpython\b|\bregex\b|stack trace|\bcompile",
        ),
        ("translation", r"\btranslat|\bübersetz|\binto (german|french|spanish|italian|polish)\b"),
        (
            "extraction",
            r"\bextract|\bfields?\b.*\bjson\b|\bparse\b|\binvoice (number|lines)|"
            r"\bsupplier doc|\bocr\b",
        ),
        ("summarisation", r"\bsummar|\btl;?dr\b|\bkey points\b|\bbullet points\b"),
        (
            "classification",
            r"\bclassif|\bcategori[sz]e|\blabel (this|the)\b|\bwhich category|\btriage\b",
        ),
        (
            "research",
            r"\banaly[sz]e\b|\bregulation|\bstatute|\bcase law|\btax (treatment|law|code)|"
            r"\bcompare\b|\bimplications\b|\bwhy does\b|\bIFRS\b|\bGAAP\b|\bresearch\b",
        ),
        ("drafting", r"\bdraft\b|\bwrite (a|an) (reply|email|letter)|\breply to\b|\bemails?\b"),
        (
            "support",
            r"\bcustomer\b|\bhow do i\b|\bmy order\b|\bwarranty\b|\bticket\b|\bsupport\b|"
            r"\bchat\b",
        ),
    )
)

# The grade a person would pick for each kind of task, before knowing anything else.
TASK_NEED: dict[str, str] = {
    "classification": "low",
    "extraction": "low",
    "drafting": "low",
    "translation": "medium",
    "summarisation": "medium",
    "support": "medium",
    "code": "medium",
    "general": "medium",
    "research": "high",
}

CONFIDENTIAL_PATTERN = re.compile(
    r"\bIBAN\b|\b[A-Z]{2}\d{2}(?: ?\d{4}){3,7}\b|\bconfidential\b|\bsalary\b|\bpayroll\b|"
    r"\btax (id|number|return)\b|\bsocial security\b|\b\d{3}-\d{2}-\d{4}\b|\bpassport\b",
    re.IGNORECASE,
)


def infer_task(prompts: Iterable[str], name: str = "") -> str:
    """What a workload's name says it is, else the most common task its prompts look like,
    else ``general``."""
    if name:
        words = re.sub(r"[-_./:]+", " ", name)
        for task, pattern in TASK_PATTERNS:
            if pattern.search(words):
                return task
    votes: dict[str, int] = defaultdict(int)
    for prompt in prompts:
        for task, pattern in TASK_PATTERNS:
            if pattern.search(prompt):
                votes[task] += 1
                break
    return max(votes, key=lambda task: votes[task]) if votes else "general"


def looks_confidential(prompts: Iterable[str]) -> bool:
    return any(CONFIDENTIAL_PATTERN.search(prompt) for prompt in prompts)


# -- Podium's own traces ------------------------------------------------------------------------

GroupBy = Literal["auto", "contract", "caller", "route", "model"]


def read_traces(
    db_path: Path, *, since: float | None = None, until: float | None = None
) -> list[TraceRecord]:
    """Traces from a Podium SQLite store, read-only, oldest first."""
    if not db_path.is_file():
        raise WorkloadError(f"{db_path}: no such trace store")
    clauses, params = [], []
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(since)
    if until is not None:
        clauses.append("created_at < ?")
        params.append(until)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {', '.join(COLUMNS)} FROM traces {where} ORDER BY created_at"
    try:
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise WorkloadError(f"{db_path}: cannot open the trace store: {error}") from None
    try:
        rows = db.execute(sql, params).fetchall()
    except sqlite3.Error as error:
        raise WorkloadError(f"{db_path}: not a Podium trace store ({error})") from None
    finally:
        db.close()
    records = []
    for row in rows:
        data: dict[str, Any] = dict(zip(COLUMNS, row, strict=True))
        for column in JSON_COLUMNS:
            data[column] = orjson.loads(data[column] or "[]")
        data["stream"] = bool(data["stream"])
        records.append(TraceRecord(**data))
    return records


def _group_key(group_by: GroupBy, records: list[TraceRecord]) -> Callable[[TraceRecord], str]:
    if group_by == "auto":
        group_by = "contract" if any(record.contract for record in records) else "caller"
    keys: dict[str, Callable[[TraceRecord], str]] = {
        "contract": lambda record: record.contract or f"caller:{record.caller}",
        "caller": lambda record: record.caller,
        "route": lambda record: record.route,
        "model": lambda record: record.requested_model,
    }
    return keys[group_by]


def workloads_from_traces(
    records: list[TraceRecord],
    *,
    source: str = "podium traces",
    group_by: GroupBy = "auto",
    period_days: float | None = None,
    thresholds: Sequence[int] = (),
) -> WorkloadSet:
    """One workload per contract (or caller, route or requested model), with the mix of
    workers that actually answered it, from each attempt's own tokens; requests (and each
    worker's calls) by size band between the long-prompt ``thresholds``."""
    if not records:
        raise WorkloadError(f"{source}: no traces in the chosen window")
    key = _group_key(group_by, records)
    groups: dict[str, list[TraceRecord]] = defaultdict(list)
    for record in records:
        groups[key(record)].append(record)
    first = min(record.created_at for record in records)
    last = max(record.created_at for record in records)
    warnings = []
    if period_days is None:
        period_days = max((last - first) / 86_400, 1 / 86_400)
        if period_days < 1:
            warnings.append(
                f"the traces cover {period_days * 24:.2f} hours; annual figures extrapolate "
                "from less than a day"
            )
    workloads = []
    for name, group in sorted(groups.items()):
        uses: dict[str, ModelUse] = {}
        tallies: dict[str, BandTally] = {}
        sizes = BandTally(thresholds)
        for record in group:
            sizes.add(1.0, record.input_tokens, record.output_tokens)
            steps = record.steps or [
                {
                    "worker": record.worker,
                    "input_tokens": record.input_tokens,
                    "output_tokens": record.output_tokens,
                }
            ]
            for step in steps:
                tokens_in = float(step.get("input_tokens") or 0)
                tokens_out = float(step.get("output_tokens") or 0)
                worker = step.get("worker")
                if not worker or (tokens_in == 0 and tokens_out == 0):
                    continue  # a call that never reached a model costs nothing
                use = uses.setdefault(str(worker), ModelUse(str(worker), 0.0, 0.0, 0.0))
                use.calls += 1
                use.input_tokens += tokens_in
                use.output_tokens += tokens_out
                tallies.setdefault(str(worker), BandTally(thresholds)).add(
                    1.0, tokens_in, tokens_out
                )
        for worker, tally in tallies.items():
            uses[worker].bands = tally.bands()
        count = float(len(group))
        classes = {record.data_class for record in group}
        prompts = [record.prompt for record in group if record.prompt][:5]
        workloads.append(
            Workload(
                name=name,
                requests_per_day=count / period_days,
                input_tokens=sum(record.input_tokens for record in group) / count,
                output_tokens=sum(record.output_tokens for record in group) / count,
                data_class=_strictest(classes),
                data_class_source="traces",
                quality_source="inferred",
                task=infer_task(prompts, name),
                sample_prompts=prompts,
                current=list(uses.values()),
                basis=count,
                observed_requests=count,
                max_input_tokens=max(record.input_tokens for record in group),
                bands=sizes.bands(),
            )
        )
    return WorkloadSet(
        workloads=workloads,
        source=source,
        kind="traces",
        period_days=period_days,
        rows=len(records),
        warnings=warnings,
    )


DATA_CLASS_ORDER = ("public", "internal", "confidential", "restricted")


def _strictest(classes: set[str]) -> str:
    ranked = [name for name in DATA_CLASS_ORDER if name in classes]
    if ranked:
        return ranked[-1]
    return sorted(classes)[-1] if classes else "internal"
