"""The name and address tagger, as the PII screen uses it."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from podium.policy.names import COMMON, TOKEN, TRIGGERS, NameTagger, spans, tokenize

PII = Path(__file__).resolve().parents[2] / "shared/data/security/pii/presidio_synth_train.json"


@pytest.fixture(scope="module", params=["compiled", "python"])
def tagger(request: pytest.FixtureRequest) -> NameTagger:
    """The tagger as shipped (ASCII text read in C, when the module was built: CI builds it)
    and the Python tagger alone, which reads other text and stands in without a compiler."""
    loaded = NameTagger.load()
    if request.param == "python":
        loaded._compiled = None
    elif loaded._compiled is None and not os.environ.get("CI"):
        pytest.skip("the C tagger was not built (no C compiler)")
    assert request.param == "python" or loaded._compiled is not None
    return loaded


def found(tagger: NameTagger, text: str) -> dict[str, str]:
    return {text[f.start : f.end]: f.kind for f in tagger.inspect(text)}


def test_names_and_addresses_in_sentences(tagger: NameTagger) -> None:
    text = "My name is Lena Andersson and I live at 2450 Crown St, Springfield."
    assert found(tagger, text) == {"Lena Andersson": "PERSON", "2450 Crown St": "ADDRESS"}
    letter = "Hello, this is Dr. Kyle Kuefer. Please send it to 2450 Crown St Suite 12."
    assert found(tagger, letter)["Kyle Kuefer"] == "PERSON"


def test_a_lower_case_name_after_a_trigger_word(tagger: NameTagger) -> None:
    assert found(tagger, "hi, my name is lena andersson") == {"lena andersson": "PERSON"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        " \n\t",
        "please summarise the attached text in three bullet points",
        "order 1234 shipped in 2024 with 12 fixes",
        "Hi, about my order 98765: the kettle arrived with a dented lid. Can I get a refund?",
    ],
)
def test_nothing_in_ordinary_text_or_numbers_alone(tagger: NameTagger, text: str) -> None:
    assert tagger.inspect(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "Memo\nTo: all staff\nFrom: Finance",
        "Agenda\n1. Budget\n2. Hiring",
        "See Appendix B for the figures, and Exhibit 4 for the contract.",
        "Subject: Quarterly numbers\nAttachments: two",
        "Summary\nThe board approved the plan. Minutes follow.",
        "Memorandum — réunion du conseil, Appendix B",
    ],
)
def test_the_headings_of_documents_are_not_names(tagger: NameTagger, text: str) -> None:
    """A PDF's text starts with them; they were once taken for names."""
    assert tagger.inspect(text) == []


def test_a_name_after_a_heading_is_still_found(tagger: NameTagger) -> None:
    assert found(tagger, "Memo\nFrom: Lena Andersson") == {"Lena Andersson": "PERSON"}
    assert found(tagger, "Regards,\nKyle Kuefer") == {"Kyle Kuefer": "PERSON"}


@pytest.mark.parametrize(
    "text",
    [
        "My name is Lena Andersson and I live at 2450 Crown St, Springfield.",
        "Send the parcel to 17 Rue de Rivoli, Paris, attention Zoë Müller.",
        "I’m writing for O'Brien and ms jane doe\nat 12b Baker Street, London NW1.",
        "thanks dear mr smith, with love from THE DOE FAMILY; call me ANNA. İstanbul? ⓐⒶ",
        "named called hi hello me with dr mrs lena 221B baker st\t\tmr  jones",
    ],
)
def test_inspect_finds_what_labelling_every_token_finds(tagger: NameTagger, text: str) -> None:
    """inspect skips the tokens that cannot start an entity; it must not change the result."""
    labels = tagger.labels(TOKEN.findall(text))
    assert tagger.inspect(text) == list(spans(tokenize(text), labels))


def corpus() -> list[str]:
    """The shared PII train texts (when the data is beside the repo) and seeded noise built
    from what the candidate scan looks at: capitals, digits, trigger words, apostrophes,
    unusual spaces and non-ASCII letters."""
    texts: list[str] = []
    if PII.is_file():
        texts += [row["full_text"] for row in json.loads(PII.read_text(encoding="utf-8"))]
    rng = random.Random(11)
    words = [*TRIGGERS, *sorted(COMMON)[:40], "Lena", "ANDERSSON", "12b", "2450", "St", "O'Brien"]
    pieces = [*words, "’s", "\n", "\t", "\u00a0", ",", ".", "(", ":"]
    pieces += ["İ", "K", "ⓐ", "Zoë", "Müller"]
    # What only the C tokenizer reads by hand: the ASCII spaces \s matches beyond " \t\n",
    # control characters, apostrophes and underscores at word edges, the boundary marks.
    ascii_pieces = [*words, "\x1c", "\x1f", "\x0b", "\x0c", "\r", "\x00", "\x7f", ",", "."]
    ascii_pieces += ["o'brien'", "_x", "__", "'", "a'b'c", '"', ">", ";", "Mr", "SMITH", "9" * 15]
    for _ in range(3000):
        chosen = [rng.choice(ascii_pieces) for _ in range(rng.randint(0, 30))]
        texts.append("".join(word + rng.choice(["", " ", " ", "\t", "\n"]) for word in chosen))
    for _ in range(3000):
        chosen = [rng.choice(pieces) for _ in range(rng.randint(0, 30))]
        texts.append("".join(word + rng.choice(["", " ", " ", "  "]) for word in chosen))
    return texts


def test_inspect_matches_labelling_every_token_over_a_corpus(tagger: NameTagger) -> None:
    differing = [
        text[:60]
        for text in corpus()
        if tagger.inspect(text) != list(spans(tokenize(text), tagger.labels(TOKEN.findall(text))))
    ]
    assert differing == []
