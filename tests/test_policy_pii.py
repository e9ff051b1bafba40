from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.policy.detect import PiiDetector
from podium.policy.pii import PatternDetector, iban_valid, luhn

CORPUS = Path(__file__).resolve().parents[2] / "shared/data/security/pii/presidio_synth_train.json"


def kinds(text: str, detector: PatternDetector | PiiDetector | None = None) -> dict[str, str]:
    found = (detector or PiiDetector()).inspect(text)
    return {text[f.start : f.end]: f.kind for f in found}


def test_checksums() -> None:
    assert luhn("4111111111111111") and not luhn("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82WEST12345698765433")


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        (
            "mail me at jane.doe+x@mail.example.co.uk today",
            "jane.doe+x@mail.example.co.uk",
            "EMAIL",
        ),
        ("card 4111 1111 1111 1111 please", "4111 1111 1111 1111", "CREDIT_CARD"),
        ("IBAN GB82 WEST 1234 5698 7654 32 ok", "GB82 WEST 1234 5698 7654 32", "IBAN"),
        ("my SSN is 219-09-9999", "219-09-9999", "US_SSN"),
        ("from 192.168.10.4 and 2001:db8::8a2e:370:7334", "2001:db8::8a2e:370:7334", "IP_ADDRESS"),
        ("from 192.168.10.4 and more", "192.168.10.4", "IP_ADDRESS"),
        ("call +44 20 7946 0958 now", "+44 20 7946 0958", "PHONE"),
        ("call me on 01.84.17.61.18?", "01.84.17.61.18", "PHONE"),
        ("Desk: (898)666-3621x0135", "(898)666-3621x0135", "PHONE"),
        ("I was born on 2/8/1935 in Ohio", "2/8/1935", "DATE_OF_BIRTH"),
        ("my passport number is X1234567", "X1234567", "PASSPORT"),
    ],
)
def test_structured_identifiers(text: str, value: str, kind: str) -> None:
    assert kinds(text, PatternDetector()).get(value) == kind


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112",  # fails Luhn
        "SSN 900-12-3456",  # never issued
        "the meeting is on 2000-04-16 11:34:35",
        "version 3.2 shipped in 2024 with 12 fixes",
        "The restaurant is at 17151 2450 Crown St",
    ],
)
def test_lookalikes_are_not_identifiers(text: str) -> None:
    found = kinds(text, PatternDetector())
    assert not {k for k in found.values() if k in ("CREDIT_CARD", "US_SSN", "PHONE")}


def test_names_and_addresses_from_the_tagger() -> None:
    found = kinds(
        "Hello, this is Dr. Kyle Kuefer. Please send it to 2450 Crown St Suite 12, Springfield."
    )
    assert found.get("Kyle Kuefer") == "PERSON"
    assert any(kind == "ADDRESS" and "Crown St" in value for value, kind in found.items())


def test_unknown_engine_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown PII engine"):
        PiiDetector(["spacy"]).inspect("x")


@pytest.mark.skipif(not CORPUS.is_file(), reason="the shared PII corpus is not beside the repo")
def test_eval_pii_meets_the_recall_targets_on_the_dev_split() -> None:
    result = CliRunner().invoke(
        main, ["policy", "eval-pii", str(CORPUS), "--split", "dev", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    recall = {row["podium_type"]: row["recall"] for row in report["types"] if row["gold"]}
    for kind in ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS"):
        assert recall[kind] >= 0.95, kind
    assert recall["PERSON"] >= 0.85 and recall["ADDRESS"] >= 0.85


def test_eval_pii_refuses_a_malformed_corpus(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a list"}', encoding="utf-8")
    result = CliRunner().invoke(main, ["policy", "eval-pii", str(bad)])
    assert result.exit_code != 0 and "expected a JSON list" in result.output
