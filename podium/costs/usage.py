"""Reading usage exports (CSV or JSONL, OpenAI-style and the like) into workloads.

Real exports name their columns differently (``snapshot_id`` or ``model``,
``n_context_tokens_total`` or ``prompt_tokens``...), so columns are matched by any of the names
below. A row that cannot be counted honestly (no model, negative or absurd numbers) is
rejected and reported with its line number; it never silently changes a total.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from podium.costs.workloads import (
    GRADES_BY_NAME,
    MAX_INPUT_TOKENS,
    MAX_OUTPUT_TOKENS,
    QUALITY_LEVELS,
    TASK_NEED,
    BandTally,
    ModelUse,
    Workload,
    WorkloadError,
    WorkloadSet,
    infer_task,
    looks_confidential,
)

FIELDS: dict[str, tuple[str, ...]] = {
    "model": (
        "model",
        "model_id",
        "snapshot_id",
        "model_name",
        "engine",
        "response.model",
        "body.model",
        "request.model",
    ),
    "input_tokens": (
        "input_tokens",
        "prompt_tokens",
        "n_context_tokens_total",
        "context_tokens",
        "n_input_tokens",
        "tokens_in",
        "usage.prompt_tokens",
        "usage.input_tokens",
        "response.usage.prompt_tokens",
    ),
    "output_tokens": (
        "output_tokens",
        "completion_tokens",
        "n_generated_tokens_total",
        "generated_tokens",
        "n_output_tokens",
        "tokens_out",
        "usage.completion_tokens",
        "usage.output_tokens",
        "response.usage.completion_tokens",
    ),
    "cached_tokens": (
        "input_cached_tokens",
        "cached_tokens",
        "cached_input_tokens",
        "cache_read_input_tokens",
        "usage.prompt_tokens_details.cached_tokens",
        "prompt_tokens_details.cached_tokens",
        "usage.cache_read_input_tokens",
    ),
    "requests": ("num_model_requests", "n_requests", "requests", "request_count", "num_requests"),
    "timestamp": (
        "timestamp",
        "start_time",
        "created",
        "created_at",
        "time",
        "date",
        "start_time_iso",
    ),
    "prompt": ("prompt", "messages", "input", "request.messages", "body.messages"),
    "workload": (
        "feature",
        "workload",
        "use_case",
        "tag",
        "metadata.feature",
        "metadata.workload",
        "metadata.use_case",
        "project_name",
        "api_key_name",
        "project",
        "project_id",
        "app",
    ),
    "data_class": ("data_class", "metadata.data_class", "classification"),
    "tools": ("tools", "has_tools", "tool_calls", "functions", "request.tools", "body.tools"),
    "json": ("response_format", "json_mode", "request.response_format", "body.response_format"),
    "vision": ("images", "has_images", "n_images", "vision", "input_images"),
    "batch": ("batch", "is_batch"),
}
REQUIRED = ("model", "input_tokens", "output_tokens")
LONG_CONTEXT_TOKENS = 100_000


class UsageError(WorkloadError):
    """A usage export that cannot be read at all."""


@dataclass(slots=True)
class UsageRow:
    line: int
    model: str
    input_tokens: float
    output_tokens: float
    cached_tokens: float = 0.0
    requests: float = 1.0
    timestamp: float | None = None
    prompt: str | None = None
    workload: str | None = None
    data_class: str | None = None
    features: frozenset[str] = frozenset()


@dataclass(slots=True)
class UsageLog:
    source: str
    rows: list[UsageRow]
    columns: dict[str, str]  # our field -> the file's column
    read: int = 0  # data rows in the file
    rejected: list[tuple[int, str]] = field(default_factory=list)
    empty: int = 0  # rows with no requests and no tokens (harmless, skipped)
    warnings: list[str] = field(default_factory=list)


# -- reading ------------------------------------------------------------------------------------


def _key(name: str) -> str:
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{_key(str(key))}"
        flat[name] = item
        if isinstance(item, dict):
            flat.update(_flatten(item, f"{name}."))
    return flat


def _records(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any] | str]]]:
    """The column names seen and the (line, record-or-error) pairs of a CSV or JSONL file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such usage file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (expected CSV or JSONL)") from None
    if not text.strip():
        raise UsageError(f"{path}: the file is empty: no usage to count")
    stripped = text.lstrip()
    header: list[str] = []
    if stripped.startswith("["):
        try:
            items = orjson.loads(stripped)
        except orjson.JSONDecodeError as error:
            raise UsageError(f"{path}: not valid JSON: {error}") from None
        records = [
            (index + 1, _flatten(item) if isinstance(item, dict) else "not a JSON object")
            for index, item in enumerate(items)
        ]
    elif stripped.startswith("{"):
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
            except orjson.JSONDecodeError:
                records.append((number, "not valid JSON"))
                continue
            records.append((number, _flatten(item) if isinstance(item, dict) else "not an object"))
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise UsageError(f"{path}: no header row")
        header = [_key(name) for name in reader.fieldnames]
        records = []
        for number, row in enumerate(reader, start=2):
            if None in row:
                records.append((number, "more values than header columns"))
                continue
            records.append((number, {_key(k): v for k, v in row.items()}))
    columns: dict[str, None] = dict.fromkeys(header)
    for _, record in records:
        if isinstance(record, dict):
            columns.update(dict.fromkeys(record))
    return list(columns), iter(records)


def _pick_columns(seen: list[str], source: str) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for name, aliases in FIELDS.items():
        for alias in aliases:
            if alias in seen:
                chosen[name] = alias
                break
    missing = [name for name in REQUIRED if name not in chosen]
    if missing:
        wanted = "; ".join(f"{name}: one of {', '.join(FIELDS[name])}" for name in missing)
        raise UsageError(
            f"{source}: missing column(s) {', '.join(missing)} ({wanted}); "
            f"the file has: {', '.join(seen[:30]) or 'no columns'}"
        )
    return chosen


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("a yes/no where a number belongs")
    if isinstance(value, int | float):
        number = float(value)
    else:
        number = float(str(value).strip().replace(",", "").replace("_", ""))
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _timestamp(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = _number(value)
    except ValueError:
        number = None
    if number is not None:
        return number / 1000 if number > 1e12 else number
    text = str(value).strip().replace(" UTC", "").replace("Z", "+00:00")
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _truthy(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, list | dict):
        return bool(value)
    return str(value).strip().lower() not in ("", "0", "false", "no", "none", "null", "[]", "{}")


def _is_json_mode(value: Any) -> bool:
    if isinstance(value, dict):
        return "json" in str(value.get("type", ""))
    if isinstance(value, str):
        return "json" in value.lower() or value.strip().lower() in ("true", "1", "yes")
    return _truthy(value)


def _prompt_text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for message in value:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, list):
                    content = " ".join(
                        str(part.get("text", "")) for part in content if isinstance(part, dict)
                    )
                parts.append(str(content or ""))
            else:
                parts.append(str(message))
        return "\n".join(part for part in parts if part)
    return str(value)


def _row(line: int, record: dict[str, Any], columns: dict[str, str]) -> UsageRow | str | None:
    """A counted row, the reason it is rejected, or None for an empty bucket."""

    def get(name: str) -> Any:
        column = columns.get(name)
        return record.get(column) if column else None

    model = str(get("model") or "").strip()
    try:
        tokens_in = _number(get("input_tokens"))
        tokens_out = _number(get("output_tokens"))
        cached = _number(get("cached_tokens")) or 0.0
        requests = _number(get("requests"))
    except ValueError as error:
        return f"a token or request count is not a number ({error})"
    if tokens_in is None or tokens_out is None:
        return "input or output token count is empty"
    if requests is None:
        requests = 1.0
    if min(tokens_in, tokens_out, cached, requests) < 0:
        return "negative token or request count"
    if requests == 0:
        return None if tokens_in == 0 and tokens_out == 0 else "tokens with zero requests"
    if not model:
        return "no model named"
    if tokens_in / requests > MAX_INPUT_TOKENS or tokens_out / requests > MAX_OUTPUT_TOKENS:
        return (
            f"absurd size: {tokens_in / requests:,.0f} input / {tokens_out / requests:,.0f} "
            "output tokens per request"
        )
    if cached > tokens_in:
        return "more cached tokens than input tokens"
    features = set()
    for flag in ("tools", "vision", "batch"):
        if _truthy(get(flag)):
            features.add(flag)
    if columns.get("json") and _is_json_mode(get("json")):
        features.add("json")
    if tokens_in / requests > LONG_CONTEXT_TOKENS:
        features.add("long-context")
    workload = get("workload")
    data_class = get("data_class")
    return UsageRow(
        line=line,
        model=model,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cached_tokens=cached,
        requests=requests,
        timestamp=_timestamp(get("timestamp")),
        prompt=_prompt_text(get("prompt")),
        workload=str(workload).strip() if workload not in (None, "") else None,
        data_class=str(data_class).strip() if data_class not in (None, "") else None,
        features=frozenset(features),
    )


def read_usage(path: Path) -> UsageLog:
    seen, records = _records(path)
    columns = _pick_columns(seen, str(path))
    log = UsageLog(source=str(path), rows=[], columns=columns)
    bad_times = 0
    for line, record in records:
        log.read += 1
        if isinstance(record, str):
            log.rejected.append((line, record))
            continue
        try:
            row = _row(line, record, columns)
        except ValueError:
            bad_times += 1
            record = {key: value for key, value in record.items() if key != columns["timestamp"]}
            row = _row(line, record, columns)
        if row is None:
            log.empty += 1
        elif isinstance(row, str):
            log.rejected.append((line, row))
        else:
            log.rows.append(row)
    if log.read == 0:
        raise UsageError(f"{path}: a header but no rows: no usage to count")
    if bad_times:
        log.warnings.append(f"{bad_times} row(s) have a timestamp that could not be read")
    if log.rejected:
        lines = ", ".join(str(line) for line, _ in log.rejected[:8])
        more = "..." if len(log.rejected) > 8 else ""
        log.warnings.append(
            f"{len(log.rejected)} of {log.read} row(s) rejected and NOT counted in any total "
            f"(lines {lines}{more}): {_reasons(log.rejected)}"
        )
    if not log.rows:
        raise UsageError(f"{path}: no usable rows ({_reasons(log.rejected) or 'all empty'})")
    return log


def _reasons(rejected: list[tuple[int, str]]) -> str:
    counts: dict[str, int] = defaultdict(int)
    for _, reason in rejected:
        counts[reason.split(":")[0]] += 1
    return "; ".join(f"{reason} ({count})" for reason, count in counts.items())


# -- from rows to workloads ---------------------------------------------------------------------


def _period_days(rows: list[UsageRow], source: str) -> float:
    times = [row.timestamp for row in rows if row.timestamp is not None]
    if not times:
        raise UsageError(
            f"{source}: no readable timestamps, so the period the usage covers is unknown; "
            "pass --period-days"
        )
    first, last = min(times), max(times)
    # A bucketed export (one row per hour or day) covers its last bucket too.
    if all(time % 86_400 == 0 for time in times):
        last += 86_400
    elif all(time % 3_600 == 0 for time in times):
        last += 3_600
    span = last - first
    if span >= 7 * 86_400:
        # Weeks or more: count whole calendar days, so a month's export is that month.
        span = math.ceil(last / 86_400) * 86_400 - math.floor(first / 86_400) * 86_400
    return max(span / 86_400, 1 / 24)


GradeOf = Callable[[str], str | None]


def usage_workloads(
    log: UsageLog,
    *,
    grade_of: GradeOf | None = None,
    period_days: float | None = None,
    thresholds: Sequence[int] = (),
) -> WorkloadSet:
    """One workload per feature/workload column value; without one, per kind of task the
    prompts look like; without prompts, per model. Requests are kept apart by size band
    between the long-prompt ``thresholds`` (a bucketed row by its own average)."""
    rows = log.rows
    period = period_days if period_days is not None else _period_days(rows, log.source)
    warnings = list(log.warnings)
    if period < 1:
        warnings.append(
            f"the usage covers {period * 24:.1f} hours; annual figures extrapolate from it"
        )
    has_workload = "workload" in log.columns
    has_prompts = any(row.prompt for row in rows)

    def key(row: UsageRow) -> str:
        if has_workload:
            return row.workload or "(untagged)"
        if has_prompts:
            return infer_task([row.prompt]) if row.prompt else "(no prompt)"
        return row.model

    groups: dict[str, list[UsageRow]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    workloads = [
        _workload(name, group, period, grade_of, thresholds)
        for name, group in sorted(groups.items())
    ]
    return WorkloadSet(
        workloads=workloads,
        source=log.source,
        kind="usage",
        period_days=period,
        rows=log.read,
        rejected=list(log.rejected),
        warnings=warnings,
    )


def _workload(
    name: str,
    rows: list[UsageRow],
    period: float,
    grade_of: GradeOf | None,
    thresholds: Sequence[int] = (),
) -> Workload:
    uses: dict[str, ModelUse] = {}
    tallies: dict[str, BandTally] = {}
    sizes = BandTally(thresholds)
    features: set[str] = set()
    prompts: list[str] = []
    classes: set[str] = set()
    for row in rows:
        use = uses.setdefault(row.model, ModelUse(row.model, 0.0, 0.0, 0.0))
        use.calls += row.requests
        use.input_tokens += row.input_tokens
        use.output_tokens += row.output_tokens
        use.cached_tokens += row.cached_tokens
        sizes.add(row.requests, row.input_tokens, row.output_tokens, row.cached_tokens)
        tallies.setdefault(row.model, BandTally(thresholds)).add(
            row.requests, row.input_tokens, row.output_tokens, row.cached_tokens
        )
        if "batch" in row.features:
            use.batch_calls += row.requests
        features |= row.features
        if row.prompt and len(prompts) < 200 and row.prompt not in prompts:
            prompts.append(row.prompt)
        if row.data_class:
            classes.add(row.data_class)
    for model, tally in tallies.items():
        uses[model].bands = tally.bands()
    requests = sum(use.calls for use in uses.values())
    task = infer_task(prompts, name)
    need = TASK_NEED.get(task, "medium")
    dominant = max(uses.values(), key=lambda use: use.calls).model
    current_grade = grade_of(dominant) if grade_of else None
    if current_grade and GRADES_BY_NAME[current_grade] < GRADES_BY_NAME[need]:
        need = current_grade  # the team is content with what it gets today
    if classes:
        data_class, class_source = sorted(classes)[-1], "usage file"
    elif looks_confidential(prompts):
        data_class, class_source = "confidential", "inferred from prompts"
    else:
        data_class, class_source = "internal", "assumed"
    return Workload(
        name=name,
        requests_per_day=requests / period,
        input_tokens=sum(use.input_tokens for use in uses.values()) / requests,
        output_tokens=sum(use.output_tokens for use in uses.values()) / requests,
        cached_tokens=sum(use.cached_tokens for use in uses.values()) / requests,
        quality=QUALITY_LEVELS[need],
        quality_source="inferred",
        data_class=data_class,
        data_class_source=class_source,
        task=task,
        features=features,
        sample_prompts=[prompt[:300] for prompt in prompts[:3]],
        current=sorted(uses.values(), key=lambda use: -use.calls),
        basis=requests,
        observed_requests=requests,
        max_input_tokens=max(row.input_tokens / row.requests for row in rows),
        batch_share=sum(use.batch_calls for use in uses.values()) / requests,
        bands=sizes.bands(),
    )
