"""The packed weights decide a token's label as the float weights do, or say they cannot."""

from __future__ import annotations

from podium.policy.name_scores import PackedScores
from podium.policy.names import BOUNDARY, LABELS, NameTagger, features, shape

SENTENCE = "Dear Mr Lena Andersson , please ship it to 2450 Crown St in Springfield ."


def test_the_packed_winner_is_the_float_weights_winner() -> None:
    tagger = NameTagger.load()
    packed = PackedScores.build(tagger.weights, LABELS)
    assert packed is not None
    words = SENTENCE.split()
    decided = 0
    for index, word in enumerate(words):
        for previous, previous2 in (("O", "O"), ("PERSON", "O"), ("ADDRESS", "ADDRESS")):
            before = words[index - 1] if index else "<s>"
            before2 = words[index - 2] if index > 1 else "<s>"
            after = words[index + 1] if index + 1 < len(words) else "</s>"
            after2 = words[index + 2] if index + 2 < len(words) else "</s>"
            winner = packed.winner(
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
