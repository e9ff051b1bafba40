"""Evaluators: does an output pass? Exact match, a regular expression, schema validity, a
reference answer (share of expected fields matched) or a judge worker.

``exact`` and ``reference`` need an expected output (examples, tests, shadow agreement);
``schema``, ``regex`` and ``judge`` can judge a live output on its own.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from podium.contracts.model import Contract, Evaluator
from podium.contracts.schemas import Checker

# A judge: (contract, input, output) -> (passed, reason).
Judge = Callable[[Contract, dict[str, Any], Any], Awaitable[tuple[bool, str]]]
STRING_MATCH = 0.9  # difflib ratio at which two strings count as the same value


@dataclass(slots=True)
class Verdict:
    passed: bool | None  # None: this evaluator cannot judge without an expected output
    score: float | None
    detail: str


def _canonical(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _pick(value: Any, fields: list[str] | None) -> Any:
    if fields is None or not isinstance(value, dict):
        return value
    return {name: value.get(name) for name in fields}


def _leaves(value: Any, prefix: str = "$") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_leaves(item, f"{prefix}.{key}"))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            out.update(_leaves(item, f"{prefix}[{index}]"))
        return out or {prefix: []}
    return {prefix: value}


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, str) and isinstance(got, str):
        a, b = _canonical(expected), _canonical(got)
        return bool(a == b or difflib.SequenceMatcher(None, a, b).ratio() >= STRING_MATCH)
    if isinstance(expected, int | float) and isinstance(got, int | float):
        if isinstance(expected, bool) or isinstance(got, bool):
            return expected is got
        return abs(float(expected) - float(got)) <= 1e-6 * max(1.0, abs(float(expected)))
    return bool(_canonical(expected) == _canonical(got))


def similarity(expected: Any, got: Any) -> tuple[float, list[str]]:
    """Share of the expected output's leaf values the output matches, and the paths missed."""
    wanted = _leaves(expected)
    have = _leaves(got)
    if not wanted:
        return 1.0, []
    missed = [path for path, value in wanted.items() if not _same(value, have.get(path))]
    return 1.0 - len(missed) / len(wanted), missed


async def evaluate(
    contract: Contract,
    output: Any,
    expected: Any = None,
    *,
    input: dict[str, Any] | None = None,
    judge: Judge | None = None,
    evaluator: Evaluator | None = None,
) -> Verdict:
    spec = evaluator or contract.evaluator
    if spec.kind == "schema":
        problems = Checker(contract.output_schema).problems(output)
        ok = not problems
        return Verdict(ok, float(ok), "valid" if ok else problems[0])
    if spec.kind == "regex":
        assert spec.pattern is not None  # checked at load
        if spec.field is not None and isinstance(output, dict):
            value = output.get(spec.field)
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
        else:
            text = orjson.dumps(output).decode()
        ok = re.search(spec.pattern, text) is not None
        where = spec.field or "output"
        return Verdict(ok, float(ok), f"{where} {'matches' if ok else 'does not match'} pattern")
    if spec.kind == "judge":
        if judge is None:
            return Verdict(None, None, "no judge available")
        ok, reason = await judge(contract, input or {}, output)
        return Verdict(ok, float(ok), reason)
    if expected is None:
        return Verdict(None, None, f"the {spec.kind} evaluator needs an expected output")
    want, got = _pick(expected, spec.fields), _pick(output, spec.fields)
    if spec.kind == "exact":
        ok = _canonical(want) == _canonical(got)
        return Verdict(ok, float(ok), "equal" if ok else "differs from the expected output")
    score, missed = similarity(want, got)
    ok = score >= spec.threshold
    detail = f"{score:.2f} of expected fields match"
    if missed:
        detail += f"; missed {', '.join(missed[:5])}"
    return Verdict(ok, score, detail)
