"""One entry point for every workload source: a workloads YAML file, a usage export (CSV,
JSONL or a JSON array) or a Podium trace store (SQLite), told apart by extension and header."""

from __future__ import annotations

from pathlib import Path

from podium.costs.prices import PriceTable
from podium.costs.usage import read_usage, usage_workloads
from podium.costs.workloads import (
    GroupBy,
    WorkloadError,
    WorkloadSet,
    read_traces,
    read_workload_file,
    workloads_from_traces,
)

SQLITE_HEADER = b"SQLite format 3\x00"


def detect(path: Path) -> str:
    """``workloads``, ``usage`` or ``traces``."""
    if not path.exists():
        raise WorkloadError(f"{path}: no such file")
    if path.is_dir():
        if (path / "podium.db").is_file():
            return "traces"
        raise WorkloadError(f"{path}: a directory (give a file, or a data dir with podium.db)")
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(SQLITE_HEADER):
        return "traces"
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "workloads"
    if suffix in (".csv", ".tsv", ".jsonl", ".ndjson"):
        return "usage"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    if suffix == ".json":
        return "workloads" if text.startswith("{") and '"workloads"' in text else "usage"
    first = text.splitlines()[0] if text else ""
    if text.startswith(("{", "[")) or "," in first:
        return "usage"
    return "workloads"


def load_workloads(
    path: Path,
    table: PriceTable,
    *,
    period_days: float | None = None,
    since: float | None = None,
    until: float | None = None,
    group_by: GroupBy = "auto",
) -> WorkloadSet:
    kind = detect(path)
    if kind == "workloads":
        return read_workload_file(path)
    if kind == "traces":
        db = path / "podium.db" if path.is_dir() else path
        records = read_traces(db, since=since, until=until)
        return workloads_from_traces(
            records,
            source=str(path),
            group_by=group_by,
            period_days=period_days,
            thresholds=table.thresholds(),
        )

    def grade_of(model: str) -> str | None:
        price = table.lookup(model)
        return price.grade if price else None

    return usage_workloads(
        read_usage(path),
        grade_of=grade_of,
        period_days=period_days,
        thresholds=table.thresholds(),
    )
