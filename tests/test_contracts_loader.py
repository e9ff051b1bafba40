"""Loading contract files: every check happens at load, with the file and the reason."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from podium.config import ConfigError
from podium.contracts.loader import ContractError, load_contracts, load_dir, write_promotion
from podium.contracts.schemas import render
from podium.contracts.settings import ContractsConfig
from tests.contract_helpers import TICKET, build, write_contract

REPO = Path(__file__).resolve().parent.parent


def variant(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(TICKET)
    data.update(changes)
    return data


def test_the_shipped_contracts_load() -> None:
    contracts = load_dir(REPO / "contracts")
    assert contracts.names() == ["email-route", "invoice-extract"]
    invoice = contracts.get("invoice-extract")
    assert invoice is not None and len(invoice.examples) >= 3
    assert set(invoice.output_schema["required"]) >= {"vendor", "total", "line_items"}


def test_an_invalid_schema_is_refused_with_the_file_and_reason(tmp_path: Path) -> None:
    bad = variant(output_schema={"type": "object", "properties": {"team": {"type": "strng"}}})
    path = write_contract(tmp_path, bad)
    with pytest.raises(ContractError) as caught:
        load_dir(tmp_path)
    message = str(caught.value)
    assert str(path) in message
    assert "output_schema is not a valid JSON Schema" in message
    assert "$.properties.team.type" in message


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"instructions": "Route {{ input.missing }}"}, "no property 'missing'"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"name": "Bad Name"}, "name"),
        ({"input_schema": {"type": "string"}}, "must describe an object"),
        (
            {
                "examples": [
                    {"input": {"text": ""}, "expected": {"team": "billing", "confidence": 1}}
                ]
            },
            "examples[0].input breaks the input schema: $.text",
        ),
        (
            {"examples": [{"input": {"text": "x"}, "expected": {"team": "hr", "confidence": 1}}]},
            "examples[0].expected breaks the output schema: $.team",
        ),
        ({"examples": [{"input": {"text": "x"}}]}, "needs"),
        ({"evaluator": {"kind": "regex", "pattern": "("}}, "does not compile"),
        ({"policy": {"routing": {"rule": "a", "router": "b"}}}, "at most one"),
    ],
)
def test_bad_contracts_are_refused(tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    write_contract(tmp_path, variant(**changes), filename="ticket.yaml")
    with pytest.raises(ContractError, match=r"ticket\.yaml") as caught:
        load_dir(tmp_path)
    assert reason in str(caught.value)


def test_not_yaml_and_a_misnamed_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "ticket.yaml").write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_dir(tmp_path)
    (tmp_path / "ticket.yaml").unlink()
    write_contract(tmp_path, TICKET, filename="other.yaml")
    with pytest.raises(ContractError, match="file name says 'other'"):
        load_dir(tmp_path)


def test_versions_coexist_and_shadow_and_promotion_pick_the_current(tmp_path: Path) -> None:
    directory = tmp_path / "contracts"
    write_contract(directory, TICKET, filename="ticket@1.yaml")
    write_contract(directory, variant(version="2"), filename="ticket@2.yaml")
    write_contract(directory, variant(version="10"), filename="ticket@10.yaml")
    settings = ContractsConfig(dir=directory)
    contracts = load_contracts(settings, tmp_path)
    assert contracts.versions("ticket") == ["1", "2", "10"]
    assert contracts.current_version("ticket") == "10"  # natural order, not text order
    settings.shadow.versions = {"ticket": "10"}
    contracts = load_contracts(settings, tmp_path)
    assert contracts.current_version("ticket") == "2"
    shadow = contracts.shadow_of("ticket")
    assert shadow is not None and shadow.version == "10"
    write_promotion(tmp_path, "ticket", "10")
    contracts = load_contracts(settings, tmp_path)
    assert contracts.current_version("ticket") == "10" and contracts.shadow_of("ticket") is None
    settings.current = {"ticket": "7"}
    with pytest.raises(ContractError, match="no version '7'"):
        load_contracts(ContractsConfig(dir=directory, current={"ticket": "7"}), tmp_path / "x")


def test_a_bad_contract_stops_the_gateway_from_starting(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", variant(output_schema={"type": 5}))
    with pytest.raises(ConfigError, match=r"ticket\.yaml"):
        build(tmp_path, [])


def test_the_template_substitutes_values_and_runs_no_code() -> None:
    text = render(
        "A {{ input.a }} B {{input.b.c}} C {{ input.zz }} D {{ input }} {% for x in y %}",
        {"a": "{{ input.b }}", "b": {"c": [1, 2]}},
    )
    assert text.startswith("A {{ input.b }} B [1,2] C  D {")
    assert text.endswith("{% for x in y %}")


def test_an_unknown_data_class_stops_the_gateway_from_starting(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", variant(policy={"data_class": "secretish"}))
    with pytest.raises(ConfigError, match="unknown data class 'secretish'"):
        build(tmp_path, [])
