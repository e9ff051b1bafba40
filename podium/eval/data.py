"""RouterBench-format routing data: one row per query, one score and one cost column per model.

The wide layout is ``sample_id, prompt, eval_name, <model>`` (a score from 0 to 1) for each
model, ``<model>|total_cost`` (USD for that query), and optionally ``<model>|model_response``.
A prompt may be plain text or a Python-list string of turns, as in RouterBench itself.
"""

from __future__ import annotations

import ast
import csv
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

FIXED_COLUMNS = ("sample_id", "prompt", "eval_name")
COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
MAX_LITERAL_CHARS = 2_000_000  # a prompt list longer than this is read as plain text

FloatArray = npt.NDArray[np.float64]


class DataError(ValueError):
    """A file that is not in the RouterBench wide layout; the message says which and why."""


def parse_prompt(raw: str) -> str:
    """The prompt's text. A Python-list string of turns (``"['turn 1', 'turn 2']"``) becomes
    its turns joined by blank lines; anything else is returned as it is."""
    text = raw.strip()
    if not (text.startswith("[") and text.endswith("]")) or len(text) > MAX_LITERAL_CHARS:
        return raw
    try:
        # literal_eval evaluates literals only (no names, calls or attributes): safe on data.
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return raw
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return "\n\n".join(value)
    return raw


@dataclass(slots=True)
class RoutingData:
    """Per-query outcomes: ``quality[i, j]`` and ``cost[i, j]`` for query i on model j."""

    sample_ids: list[str]
    prompts: list[str]
    eval_names: list[str]
    models: list[str]
    quality: FloatArray
    cost: FloatArray
    responses: dict[str, list[str]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: Sequence[int] | npt.NDArray[np.intp]) -> RoutingData:
        rows = [int(i) for i in index]
        return RoutingData(
            sample_ids=[self.sample_ids[i] for i in rows],
            prompts=[self.prompts[i] for i in rows],
            eval_names=[self.eval_names[i] for i in rows],
            models=list(self.models),
            quality=self.quality[rows],
            cost=self.cost[rows],
            responses={m: [r[i] for i in rows] for m, r in self.responses.items()},
            sources=list(self.sources),
        )

    def select_models(self, models: Sequence[str]) -> RoutingData:
        missing = [m for m in models if m not in self.models]
        if missing:
            raise DataError(f"models not in the data: {', '.join(missing)}")
        cols = [self.models.index(m) for m in models]
        return RoutingData(
            sample_ids=list(self.sample_ids),
            prompts=list(self.prompts),
            eval_names=list(self.eval_names),
            models=list(models),
            quality=self.quality[:, cols],
            cost=self.cost[:, cols],
            responses={m: r for m, r in self.responses.items() if m in models},
            sources=list(self.sources),
        )


def _number(value: str, where: str) -> float:
    try:
        number = float(value) if value.strip() else float("nan")
    except ValueError:
        raise DataError(f"{where}: {value[:40]!r} is not a number") from None
    return number


def read_csv(path: str | Path) -> RoutingData:
    """Read one RouterBench-format CSV. Empty or non-numeric cells are errors, except that a
    missing score or cost (an empty cell) is kept as NaN and the row skipped for that model."""
    file = Path(path)
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        handle = file.open(newline="", encoding="utf-8")
    except OSError as error:
        raise DataError(f"{file}: cannot read ({error.strerror or error})") from None
    with handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for required in ("prompt",):
            if required not in header:
                raise DataError(f"{file}: no {required!r} column (not RouterBench wide format)")
        models = [c for c in header if c not in FIXED_COLUMNS and "|" not in c]
        without_cost = [m for m in models if m + COST_SUFFIX not in header]
        if without_cost:
            raise DataError(f"{file}: no cost column for {', '.join(without_cost)}")
        if not models:
            raise DataError(f"{file}: no model columns")
        with_responses = [m for m in models if m + RESPONSE_SUFFIX in header]
        ids: list[str] = []
        prompts: list[str] = []
        names: list[str] = []
        quality: list[list[float]] = []
        cost: list[list[float]] = []
        responses: dict[str, list[str]] = {m: [] for m in with_responses}
        for line, row in enumerate(reader, start=2):
            where = f"{file}:{line}"
            ids.append(row.get("sample_id") or str(line - 2))
            prompts.append(parse_prompt(row.get("prompt") or ""))
            names.append(row.get("eval_name") or "")
            quality.append([_number(row[m] or "", f"{where} {m}") for m in models])
            cost.append([_number(row[m + COST_SUFFIX] or "", f"{where} {m}|cost") for m in models])
            for m in with_responses:
                responses[m].append(row.get(m + RESPONSE_SUFFIX) or "")
    if not prompts:
        raise DataError(f"{file}: no rows")
    return RoutingData(
        sample_ids=ids,
        prompts=prompts,
        eval_names=names,
        models=models,
        quality=np.asarray(quality, dtype=np.float64),
        cost=np.asarray(cost, dtype=np.float64),
        responses=responses,
        sources=[str(file)],
    )


def concat(parts: Iterable[RoutingData]) -> RoutingData:
    """Several files as one: the models they all share (a model missing from one file would
    leave holes)."""
    items = list(parts)
    if not items:
        raise DataError("no data files given")
    shared = [m for m in items[0].models if all(m in part.models for part in items[1:])]
    if not shared:
        raise DataError("the files share no model columns")
    items = [part.select_models(shared) for part in items]
    responses = {
        m: [r for part in items for r in part.responses[m]]
        for m in shared
        if all(m in part.responses for part in items)
    }
    return RoutingData(
        sample_ids=[s for part in items for s in part.sample_ids],
        prompts=[p for part in items for p in part.prompts],
        eval_names=[e for part in items for e in part.eval_names],
        models=shared,
        quality=np.concatenate([part.quality for part in items]),
        cost=np.concatenate([part.cost for part in items]),
        responses=responses,
        sources=[s for part in items for s in part.sources],
    )


def read_many(paths: Iterable[str | Path]) -> RoutingData:
    return concat(read_csv(path) for path in paths)
