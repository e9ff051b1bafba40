"""The packed weights decide a token's label as the float weights do, or say they cannot."""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from podium.policy.name_scores import PackedScores, compiled_tagger, compiled_winner
from podium.policy.names import (
    BOUNDARY,
    COMMON,
    EMITTED,
    LABELS,
    TRIGGERS,
    NameTagger,
    features,
    shape,
)

SENTENCE = "Dear Mr Lena Andersson , please ship it to 2450 Crown St in Springfield ."


def winner_arguments(
    tagger: NameTagger, words: list[str], index: int, previous: str, previous2: str
) -> tuple[Any, ...]:
    """What the tagger passes the scorer for ``words[index]``, its neighbours read from the
    list (``<s>`` and ``</s>`` beyond its ends)."""
    word = words[index]
    before = words[index - 1] if index else "<s>"
    before2 = words[index - 2] if index > 1 else "<s>"
    after = words[index + 1] if index + 1 < len(words) else "</s>"
    after2 = words[index + 2] if index + 2 < len(words) else "</s>"
    return (
        word.lower(),
        len(word),
        shape(word),
        word.lower() in tagger.common,
        before in BOUNDARY or index == 0,
        before.lower(),
        before2.lower(),
        after.lower(),
        after2.lower(),
        shape(before),
        shape(after),
        after.lower() in tagger.common,
        previous,
        previous2,
    )


def test_the_packed_winner_is_the_float_weights_winner() -> None:
    tagger = NameTagger.load()
    packed = PackedScores.build(tagger.weights, LABELS)
    assert packed is not None
    words = SENTENCE.split()
    decided = 0
    for index, word in enumerate(words):
        for previous, previous2 in (("O", "O"), ("PERSON", "O"), ("ADDRESS", "ADDRESS")):
            winner = packed.winner(*winner_arguments(tagger, words, index, previous, previous2))
            expected = tagger.predict(features(words, index, previous, previous2, tagger.common))
            if winner is not None:
                decided += 1
                assert LABELS[winner] == expected, (word, previous)
    assert decided > 0


def test_weights_it_cannot_pack_are_left_to_the_floats() -> None:
    assert PackedScores.build({"w=lena": [1e9, 0, 0, 0, 0]}, LABELS) is None
    assert PackedScores.build({"w=lena": [0.1, 0.2]}, LABELS) is None
    assert PackedScores.build({"unknown=x": [0.1, 0.2, 0.3, 0.4, 0.5]}, LABELS) is None
    assert PackedScores.build({"w=lena": [0.1, 0.2, 0.3, 0.4, 0.5]}, LABELS) is not None


def compiled_module() -> Any:
    """The compiled scores; CI has a C compiler, so there a missing build is a failure."""
    if os.environ.get("CI"):
        from podium.policy import _name_scores

        return _name_scores
    return pytest.importorskip("podium.policy._name_scores", reason="built without a C compiler")


def test_the_compiled_winner_is_the_packed_winner_for_every_token_and_context() -> None:
    compiled_module()
    tagger = NameTagger.load()
    packed = PackedScores.build(tagger.weights, LABELS)
    assert packed is not None
    compiled = compiled_winner(packed)
    assert compiled is not None
    chooser = random.Random(11)
    texts = [
        SENTENCE,
        "Hi , about my order 1000000005 : the kettle arrived with a dented lid .",
        "Call Ms O'Neil at 221B Baker Street , London NW1 6XE or email her .",
        "Ünïcödé Straße 12 in München , said Dr Müller-Lüdenscheidt",
    ]
    pieces = [*" ".join(texts).split(), "", "x", "A" * 40, "<s>", "</s>", "|", "a|b"]
    texts += [" ".join(chooser.choice(pieces) for _ in range(12)) for _ in range(300)]
    compared = decided = 0
    for text in texts:
        words = text.split() or [""]
        for index in range(len(words)):
            for previous in LABELS:
                previous2 = chooser.choice(LABELS)
                arguments = winner_arguments(tagger, words, index, previous, previous2)
                expected = packed.winner(*arguments)
                assert compiled(*arguments) == expected, (text, index, previous, previous2)
                compared += 1
                decided += expected is not None
    assert compared > 10_000 and decided > 0


def test_the_compiled_winner_leaves_near_ties_and_refuses_what_the_packed_one_refuses() -> None:
    compiled_module()
    arguments = ["lena", 4, "xxxx", False, True, "<s>", "<s>", "</s>", "</s>", "<s>", "</s>"]
    for row, expected in (([0.1, 0.2, 0.3, 0.5, 0.4], 3), ([0.3, 0.3 + 1e-6, 0, 0, 0], None)):
        packed = PackedScores.build({"w=lena": row}, LABELS)
        assert packed is not None
        compiled = compiled_winner(packed)
        assert compiled is not None
        assert packed.winner(*arguments, False, "O", "O") == expected
        assert compiled(*arguments, False, "O", "O") == expected
    with pytest.raises(KeyError):
        packed.winner(*arguments, False, "NOT-A-LABEL", "O")
    with pytest.raises(KeyError):
        compiled(*arguments, False, "NOT-A-LABEL", "O")


def test_the_compiled_tagger_leaves_close_calls_and_other_text_to_python() -> None:
    compiled_module()
    # "O" unless the word is Lena (a clear PERSON) or Anna (a near tie with "O").
    weights = {
        "b": [0.5, 0, 0, 0, 0],
        "w=lena": [0, 0.9, 0, 0, 0],
        "w=anna": [0, 0.5 + 1e-6, 0, 0, 0],
    }
    packed = PackedScores.build(weights, LABELS)
    assert packed is not None
    tag = compiled_tagger(packed, LABELS, frozenset(), COMMON, TRIGGERS, tuple(EMITTED))
    assert tag is not None
    assert tag("Call Lena today") == [(5, 9, LABELS.index("PERSON"))]
    assert tag("Call Anna today") is None  # a near tie: the float weights decide
    assert tag("Call Zoë today") is None  # not ASCII
    assert tag("") == []
    tagger = NameTagger(weights)  # PERSON by 1e-6 in the float sums, which decide here
    for text in ("Call Anna today", "Call Lena today"):
        assert [(f.start, f.end, f.kind) for f in tagger.inspect(text)] == [(5, 9, "PERSON")]


def test_the_compiled_tagger_refuses_what_it_cannot_read() -> None:
    module = compiled_module()
    tagger = NameTagger.load()
    assert tagger._packed is not None
    tag = compiled_tagger(tagger._packed, LABELS, tagger.common, COMMON, TRIGGERS, ("PERSON",))
    assert tag is not None
    with pytest.raises(TypeError):
        tag(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        module.tag((), LABELS, frozenset(), COMMON, b" is ", 2, "Lena")
    with pytest.raises(ValueError, match="too many trigger words"):
        module.tag((), LABELS, frozenset(), COMMON, b" a" * 65, 2, "Lena")
    # Only the labels asked for make findings.
    assert tag("My name is Lena Andersson and I live at 2450 Crown St.") == [(11, 25, 1)]
