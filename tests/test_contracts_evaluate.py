"""Evaluators: exact, regex, schema, reference similarity and a judge."""

from __future__ import annotations

from typing import Any

from podium.contracts.evaluate import evaluate
from podium.contracts.model import Contract, Evaluator
from tests.contract_helpers import TICKET

CONTRACT = Contract.model_validate(TICKET)


async def test_exact_compares_the_named_fields_loosely() -> None:
    spec = Evaluator(kind="exact", fields=["team"])
    passed = await evaluate(
        CONTRACT,
        {"team": "Billing ", "confidence": 0.1},
        {"team": "billing", "confidence": 1},
        evaluator=spec,
    )
    assert passed.passed is True
    failed = await evaluate(CONTRACT, {"team": "tech"}, {"team": "billing"}, evaluator=spec)
    assert failed.passed is False
    unknown = await evaluate(CONTRACT, {"team": "tech"}, None, evaluator=spec)
    assert unknown.passed is None  # no reference: no verdict, no signal


async def test_regex_schema_and_reference() -> None:
    regex = Evaluator(kind="regex", field="team", pattern="^te")
    assert (await evaluate(CONTRACT, {"team": "tech"}, evaluator=regex)).passed
    schema = Evaluator(kind="schema")
    bad = await evaluate(CONTRACT, {"team": "hr"}, evaluator=schema)
    assert bad.passed is False and bad.detail.startswith("$")
    reference = Evaluator(kind="reference", threshold=0.75)
    expected = {"vendor": "ACME Ltd", "total": 10.0, "items": [{"a": 1}, {"a": 2}]}
    close = await evaluate(
        CONTRACT,
        {"vendor": "ACME Ltd.", "total": 10, "items": [{"a": 1}, {"a": 3}]},
        expected,
        evaluator=reference,
    )
    assert close.passed is True and close.score == 0.75 and "$.items[1].a" in close.detail


async def test_a_judge_decides() -> None:
    seen: list[Any] = []

    async def judge(contract: Contract, data: dict[str, Any], output: Any) -> tuple[bool, str]:
        seen.append((contract.name, data, output))
        return output.get("team") == "billing", "looks right"

    spec = Evaluator(kind="judge", worker="w1")
    verdict = await evaluate(
        CONTRACT, {"team": "billing"}, input={"text": "x"}, judge=judge, evaluator=spec
    )
    assert verdict.passed is True and seen == [("ticket", {"text": "x"}, {"team": "billing"})]
    assert (await evaluate(CONTRACT, {"team": "tech"}, evaluator=spec)).passed is None
