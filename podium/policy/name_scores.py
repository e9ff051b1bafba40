"""The name tagger's weights packed as integers, for scoring without feature strings.

The tagger (podium/policy/names.py) scores a token by adding, for each of its five labels,
the weights of 22 features whose keys are strings ("w=lena", "pw=my", ...). Building those
strings is most of a scored token's cost. Here every weight row is one integer holding the
five weights, scaled and rounded, and the rows are regrouped by the parts each key is made
of, so a token's score is 16 dictionary lookups and integer additions. The rounding can
change only a near tie: :meth:`PackedScores.winner` says so, and the tagger then adds the
float weights as before. The labels come out the same for every text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

# The five scores as one integer: label i's weight, scaled by 2**20 and rounded, plus a bias
# that keeps it positive, in bits 64*i and up. Summing packed rows adds the five fields at
# once (at most 22 rows, so no field overflows into the next), in C.
_SCALE = 1 << 20
_FIELD_BITS = 64
_FIELD_MASK = (1 << _FIELD_BITS) - 1
_BIAS = 1 << 40
# The integer sums differ from the exact sums of the float weights by at most half a unit per
# feature and score, and predict's float sums from those by far less than a unit: a lead of
# more than this many units is a lead in predict's sums too. Closer calls go to predict.
_CLEAR_LEAD = 2 * 22 + 2


class PackedScores(NamedTuple):
    """The packed rows regrouped by what each feature's key is made of, so that :meth:`winner`
    looks them up without building feature strings; features whose keys share all their parts are
    summed ahead (integer sums do not depend on the order). Keys are strings and nested
    dictionaries rather than tuples: no garbage-collected objects per lookup."""

    # b, pt, pt2 and lex_n: by "previous|previous2", then 2 * usual + next word usual.
    context: dict[str, tuple[int, int, int, int]]
    # lex, sh, st and pt_sh: by previous label, then 2 * usual + start, then shape.
    shaped: dict[str, tuple[dict[str, int], ...]]
    word: dict[str, int]
    suffix3: dict[str, int]
    suffix2: dict[str, int]
    prefix3: dict[str, int]
    length: tuple[int, ...]
    before: dict[str, int]
    before2: dict[str, int]
    after: dict[str, int]
    after2: dict[str, int]
    before_shape: dict[str, int]
    after_shape: dict[str, int]
    previous_word: dict[str, dict[str, int]]  # by previous label, then word
    before_word: dict[str, dict[str, int]]  # by word before, then word
    shape_after_shape: dict[str, dict[str, int]]  # by shape, then shape after
    label_count: int

    @classmethod
    def build(cls, weights: dict[str, list[float]], labels: Sequence[str]) -> PackedScores | None:
        return pack(weights, labels)

    def winner(
        self,
        lower: str,
        length: int,
        word_shape: str,
        usual: bool,
        start: bool,
        before: str,
        before2: str,
        after: str,
        after2: str,
        before_shape: str,
        after_shape: str,
        after_usual: bool,
        previous: str,
        previous2: str,
    ) -> int | None:
        """The index of the winning label for one token, or None for a call too close for
        the integer sums to decide (the caller then adds the float weights). The words are
        lower-cased; ``length`` is the token's length as written."""
        (
            context,
            shaped,
            words,
            suffixes3,
            suffixes2,
            prefixes3,
            lengths,
            befores,
            befores2,
            afters,
            afters2,
            before_shapes,
            after_shapes,
            previous_words,
            before_words,
            shapes_after_shapes,
            label_count,
        ) = self
        # One integer addition per feature (or group of features); see _SCALE for why
        # the winner is the float sums' whenever it leads by more than the rounding.
        total = (
            context[previous + "|" + previous2][2 * usual + after_usual]
            + shaped[previous][2 * usual + start].get(word_shape, 0)
            + words.get(lower, 0)
            + suffixes3.get(lower[-3:], 0)
            + suffixes2.get(lower[-2:], 0)
            + prefixes3.get(lower[:3], 0)
            + lengths[min(length, 12)]
            + befores.get(before, 0)
            + befores2.get(before2, 0)
            + afters.get(after, 0)
            + afters2.get(after2, 0)
            + before_shapes.get(before_shape, 0)
            + after_shapes.get(after_shape, 0)
            + previous_words[previous].get(lower, 0)
            + before_words.get(before, _NONE).get(lower, 0)
            + shapes_after_shapes.get(word_shape, _NONE).get(after_shape, 0)
        )
        # The best score, its label and the runner-up, without building containers.
        best, second, index = total & _FIELD_MASK, -1, 0
        for label_index in range(1, label_count):
            total >>= _FIELD_BITS
            score = total & _FIELD_MASK
            if score > best:
                best, second, index = score, best, label_index
            elif score > second:
                second = score
        return index if best - second > _CLEAR_LEAD else None


def _pair(value: str) -> tuple[str, str]:
    """Splits "a|b" where a and b are token texts (or shapes), which contain "|" only as the
    whole text "|"."""
    if value.startswith("||"):
        return "|", value[2:]
    first, _, second = value.partition("|")
    return first, second


_NONE: dict[str, int] = {}  # never written to
_TEMPLATES = (
    "lex",
    "lex_n",
    "b",
    "w",
    "s3",
    "s2",
    "p3",
    "sh",
    "len",
    "st",
    "pw",
    "pw2",
    "nw",
    "nw2",
    "psh",
    "nsh",
    "pt",
    "pt2",
    "pt_sh",
    "pt_w",
    "pw_w",
    "nsh_sh",
)


def pack(weights: dict[str, list[float]], labels: Sequence[str]) -> PackedScores | None:
    """The packed model, or None (always use the float weights) if a weight is too large to
    pack or not finite, or a feature is not one of the tagger's templates. ``labels``: the
    tagger's labels, in the order of each weight row."""
    rows: dict[str, dict[str, int]] = {}
    for feature, row in weights.items():
        if len(row) != len(labels) or not all(abs(weight) < 1e4 for weight in row):
            return None
        value = 0
        for index, weight in enumerate(row):
            value |= (round(weight * _SCALE) + _BIAS) << (_FIELD_BITS * index)
        template, _, key = feature.partition("=")
        rows.setdefault(template, {})[key] = value
    if not set(rows) <= set(_TEMPLATES):
        return None
    get = {template: rows.get(template, {}) for template in _TEMPLATES}
    truth = {False: "False", True: "True"}
    flags = ((False, False), (False, True), (True, False), (True, True))
    context: dict[str, tuple[int, int, int, int]] = {}
    for previous in labels:
        for previous2 in labels:
            fixed = (
                get["b"].get("", 0)
                + get["pt"].get(previous, 0)
                + get["pt2"].get(f"{previous}|{previous2}", 0)
            )
            sums = [fixed + get["lex_n"].get(f"{truth[a]}|{truth[b]}", 0) for a, b in flags]
            context[f"{previous}|{previous2}"] = (sums[0], sums[1], sums[2], sums[3])
    shapes = set(get["sh"])
    shapes.update(key.split("|", 2)[2] for key in get["lex"])
    shapes.update(key.partition("|")[2] for key in get["st"])
    shapes.update(key.partition("|")[2] for key in get["pt_sh"])
    shaped: dict[str, tuple[dict[str, int], ...]] = {}
    for previous in labels:
        by_flags = []
        for usual, start in flags:
            by_shape = {}
            for word_shape in shapes:
                total = (
                    get["lex"].get(f"{truth[usual]}|{truth[start]}|{word_shape}", 0)
                    + get["sh"].get(word_shape, 0)
                    + get["st"].get(f"{truth[start]}|{word_shape}", 0)
                    + get["pt_sh"].get(f"{previous}|{word_shape}", 0)
                )
                if total:
                    by_shape[word_shape] = total
            by_flags.append(by_shape)
        shaped[previous] = tuple(by_flags)

    def nested(rows: dict[str, int], firsts: tuple[str, ...] = ()) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {first: {} for first in firsts}
        for key, value in rows.items():
            first, second = _pair(key)
            out.setdefault(first, {})[second] = value
        return out

    return PackedScores(
        context=context,
        shaped=shaped,
        word=get["w"],
        suffix3=get["s3"],
        suffix2=get["s2"],
        prefix3=get["p3"],
        length=tuple(get["len"].get(str(length), 0) for length in range(13)),
        before=get["pw"],
        before2=get["pw2"],
        after=get["nw"],
        after2=get["nw2"],
        before_shape=get["psh"],
        after_shape=get["nsh"],
        previous_word=nested(get["pt_w"], tuple(labels)),
        before_word=nested(get["pw_w"]),
        shape_after_shape=nested(get["nsh_sh"]),
        label_count=len(labels),
    )


Winner = Callable[
    [str, int, str, bool, bool, str, str, str, str, str, str, bool, str, str], int | None
]


def _compiled_tables(packed: PackedScores) -> tuple[Any, ...]:
    """The packed tables as the C module reads them: each packed integer as its bytes."""
    width = 8 * packed.label_count

    def row(value: int) -> bytes:
        return value.to_bytes(width, "little")  # one unsigned 64-bit field per label

    def rows(table: dict[str, int]) -> dict[str, bytes]:
        return {key: row(value) for key, value in table.items()}

    def nested(table: dict[str, dict[str, int]]) -> dict[str, dict[str, bytes]]:
        return {key: rows(inner) for key, inner in table.items()}

    context: dict[str, dict[str, tuple[bytes, ...]]] = {}
    for key, sums in packed.context.items():
        previous, _, previous2 = key.partition("|")
        context.setdefault(previous, {})[previous2] = tuple(map(row, sums))
    return (
        context,
        {key: tuple(map(rows, by_flags)) for key, by_flags in packed.shaped.items()},
        rows(packed.word),
        rows(packed.suffix3),
        rows(packed.suffix2),
        rows(packed.prefix3),
        tuple(map(row, packed.length)),
        rows(packed.before),
        rows(packed.before2),
        rows(packed.after),
        rows(packed.after2),
        rows(packed.before_shape),
        rows(packed.after_shape),
        nested(packed.previous_word),
        nested(packed.before_word),
        nested(packed.shape_after_shape),
        packed.label_count,
    )


def compiled_winner(packed: PackedScores) -> Winner | None:
    """:meth:`PackedScores.winner` computed by the optional C module
    (``_name_scores.c``) over the same tables, or None when it was not built."""
    try:
        from podium.policy import _name_scores
    except ImportError:  # built without a C compiler
        return None
    return functools.partial(_name_scores.winner, _compiled_tables(packed))


# The runs of emitted labels in an ASCII text, as (start, end, label index); None for text the
# C tagger leaves to the Python one (not ASCII, or a call too close for the packed scores).
Tagger = Callable[[str], list[tuple[int, int, int]] | None]


def compiled_tagger(
    packed: PackedScores,
    labels: Sequence[str],
    common: frozenset[str],
    sentence_words: frozenset[str],
    triggers: frozenset[str],
    emitted: Sequence[str],
) -> Tagger | None:
    """The whole tagger (names.NameTagger.labels over names.tokenize, then names.spans) for
    ASCII text in the optional C module, or None when it was not built. ``common``: the
    model's usual lower-case words; ``sentence_words``: names.COMMON; ``triggers``:
    names.TRIGGERS; ``emitted``: the labels that make findings."""
    try:
        from podium.policy import _name_scores
    except ImportError:  # built without a C compiler
        return None
    if any(not word.isascii() or " " in word for word in triggers):
        return None  # the C module's trigger list is ASCII words between spaces
    trigger_words = (" " + " ".join(sorted(triggers)) + " ").encode()
    mask = sum(1 << index for index, label in enumerate(labels) if label in emitted)
    return functools.partial(
        _name_scores.tag,
        _compiled_tables(packed),
        tuple(labels),
        common,
        sentence_words,
        trigger_words,
        mask,
    )
