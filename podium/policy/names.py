"""Names and street addresses: a small greedy token tagger (averaged perceptron) trained on the
PII train split, with hand-chosen features (word, affixes, shape, neighbours, previous tags).

Regular expressions find structured identifiers well; names and addresses need context. A
spaCy-sized model costs ~100 ms per KB, so this tagger reads only the tokens that could start
or continue an entity (capitalised words, numbers, and whatever follows an entity) and labels
every other token ``O`` without looking: a 1 KB prompt costs well under a millisecond.

The artifact ships as ``podium/data/policy/names.json.gz``; rebuild it with
``python -m podium.policy.train_names``.
"""

from __future__ import annotations

import gzip
import json
import re
import string
from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from podium.policy.findings import Finding

MODEL_RESOURCE = "policy/names.json.gz"
LABELS = ("O", "PERSON", "ADDRESS", "ORG", "GPE")
EMITTED = {"PERSON": "PERSON", "ADDRESS": "ADDRESS"}
TOKEN = re.compile(r"\w+(?:['’]\w+)*|\n|[^\w\s]")
_SHAPE_TABLE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "X" * 26 + "x" * 26 + "d" * 10,
)
_REPEAT = re.compile(r"(.)\1+")
BOUNDARY = frozenset({".", "\n", "!", "?", ":", ";", ">", '"', "("})
# First characters for which is_candidate's answer is quick to give (after an "O" label).
_LOWER_ASCII = frozenset(string.ascii_lowercase)
_INERT_ASCII = frozenset(chr(code) for code in range(128) if not chr(code).isalnum())
_QUIET_FIRST = _LOWER_ASCII | _INERT_ASCII


class Token(NamedTuple):
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    return [Token(m.group(0), *m.span()) for m in TOKEN.finditer(text)]


# A pure function of the word: safe to share. Bounded small (~190 B a word): the words traffic
# repeats stay in it, while one-off words (order numbers, ids) would fill any size, and at
# 2^16 they held 12 MB that a long soak saw as growth.
@lru_cache(maxsize=1 << 12)
def shape(word: str) -> str:
    return _REPEAT.sub(r"\1\1", word.translate(_SHAPE_TABLE))[:6]


# Words after which a lower-case word may still be a name ("my name is lena andersson").
TRIGGERS = frozenset(
    {
        "is",
        "me",
        "with",
        "named",
        "called",
        "dear",
        "hi",
        "hello",
        "thanks",
        "mr",
        "mrs",
        "ms",
        "dr",
    }
)


def _case_forms(word: str) -> set[str]:
    """Every string whose ``lower()`` is the lower-case ASCII ``word`` (each letter or its
    capital; "k" also the Kelvin sign), so membership needs no ``lower()`` call."""
    forms = {""}
    for letter in word:
        variants = {letter, letter.upper()} | ({"\u212a"} if letter == "k" else set())
        forms = {form + variant for form in forms for variant in variants}
    return forms


_TRIGGER_FORMS = frozenset(form for trigger in TRIGGERS for form in _case_forms(trigger))


# Capitalised words that start sentences and are never a name or an address on their own.
COMMON = frozenset(
    {
        "i",
        "i'm",
        "i've",
        "i'd",
        "i'll",
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "it's",
        "my",
        "your",
        "our",
        "their",
        "his",
        "her",
        "we",
        "you",
        "they",
        "he",
        "she",
        "hello",
        "hi",
        "dear",
        "thanks",
        "thank",
        "please",
        "could",
        "would",
        "can",
        "will",
        "should",
        "may",
        "might",
        "what",
        "when",
        "where",
        "why",
        "how",
        "who",
        "which",
        "is",
        "are",
        "was",
        "were",
        "be",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "if",
        "and",
        "or",
        "but",
        "so",
        "then",
        "also",
        "yes",
        "no",
        "not",
        "ok",
        "okay",
        "as",
        "at",
        "by",
        "for",
        "from",
        "in",
        "into",
        "of",
        "on",
        "to",
        "with",
        "about",
        "after",
        "before",
        "there",
        "here",
        "all",
        "any",
        "some",
        "each",
        "every",
        "one",
        "two",
        "three",
        "first",
        "last",
        "next",
        "new",
        "good",
        "great",
        "sure",
        "let",
        "let's",
        "just",
        "now",
        "today",
        "tomorrow",
        "yesterday",
    }
)


def is_candidate(word: str, previous_label: str, previous_word: str) -> bool:
    """Whether the tagger reads this token at all. Entities start with a capital letter or a
    digit (or a non-ASCII letter); anything right after an entity or a trigger word may
    continue or start one."""
    if previous_label != "O":
        return True
    first = word[0]
    if first.isupper():
        return word.lower() not in COMMON
    if first.isdigit() or (first.isalpha() and not first.isascii()):
        return True
    return first.isalpha() and previous_word.lower() in TRIGGERS


def _starts_entity(words: Sequence[str], index: int) -> bool:
    """:func:`is_candidate` after an "O" label."""
    word = words[index]
    first = word[0]
    if first in _LOWER_ASCII:
        return index > 0 and words[index - 1] in _TRIGGER_FORMS
    if first in _INERT_ASCII:
        return False
    return is_candidate(word, "O", words[index - 1] if index else "")


def features(
    words: Sequence[str],
    index: int,
    previous: str,
    previous2: str,
    common: frozenset[str] = frozenset(),
) -> list[str]:
    """The features of ``words[index]`` (the tokens' texts). ``common``: words usually written
    in lower case in ordinary text; a capitalised one ("Given", "Solve") is more likely a
    sentence start than a name."""
    word = words[index]
    lower = word.lower()
    before = words[index - 1].lower() if index > 0 else "<s>"
    before2 = words[index - 2].lower() if index > 1 else "<s>"
    last = len(words) - 1
    after = words[index + 1] if index < last else "</s>"
    after_lower = after.lower()
    after2 = words[index + 2].lower() if index + 1 < last else "</s>"
    word_shape = shape(word)
    after_shape = shape(after)
    start = index == 0 or words[index - 1] in BOUNDARY
    usual = lower in common
    return [
        f"lex={usual}|{start}|{word_shape}",
        f"lex_n={usual}|{after_lower in common}",
        "b",
        f"w={lower}",
        f"s3={lower[-3:]}",
        f"s2={lower[-2:]}",
        f"p3={lower[:3]}",
        f"sh={word_shape}",
        f"len={min(len(word), 12)}",
        f"st={start}|{word_shape}",
        f"pw={before}",
        f"pw2={before2}",
        f"nw={after_lower}",
        f"nw2={after2}",
        f"psh={shape(words[index - 1]) if index > 0 else _START_SHAPE}",
        f"nsh={after_shape}",
        f"pt={previous}",
        f"pt2={previous}|{previous2}",
        f"pt_sh={previous}|{word_shape}",
        f"pt_w={previous}|{lower}",
        f"pw_w={before}|{lower}",
        f"nsh_sh={word_shape}|{after_shape}",
    ]


_START_SHAPE = shape("<s>")


class NameTagger:
    def __init__(self, weights: dict[str, list[float]], common: frozenset[str] = frozenset()):
        self.weights = weights
        self.common = common

    @classmethod
    def load(cls, path: Path | None = None) -> NameTagger:
        if path is None:
            source = resources.files("podium.data").joinpath(MODEL_RESOURCE)
            data = gzip.decompress(source.read_bytes())
        else:
            data = gzip.decompress(path.read_bytes())
        model = json.loads(data)
        return cls(model["weights"], frozenset(model.get("common", ())))

    def predict(self, feats: list[str]) -> str:
        # Unrolled over the five labels: this is the tagger's inner loop.
        s0 = s1 = s2 = s3 = s4 = 0.0
        get = self.weights.get
        for feature in feats:
            row = get(feature)
            if row is not None:
                s0 += row[0]
                s1 += row[1]
                s2 += row[2]
                s3 += row[3]
                s4 += row[4]
        scores = (s0, s1, s2, s3, s4)
        return LABELS[scores.index(max(scores))]

    def labels(self, words: Sequence[str]) -> list[str]:
        """One label per token text. Most tokens are not candidates and never reach the model:
        two comprehensions find the few that may start an entity after an "O" label (those
        not starting with a lower-case ASCII letter or ASCII punctuation, and those right
        after a trigger word), :func:`_starts_entity` decides, and only they and the runs
        they start are read."""
        out = ["O"] * len(words)
        maybe = [index for index, word in enumerate(words) if word[0] not in _QUIET_FIRST]
        if not _TRIGGER_FORMS.isdisjoint(words):
            after = [index + 1 for index, word in enumerate(words) if word in _TRIGGER_FORMS]
            maybe = sorted(set(maybe).union(after))
        done = 0  # the tokens before this one are labelled
        for index in maybe:
            if index < done or index == len(words):
                continue  # inside a run already labelled, or a trigger ends the text
            previous = out[index - 1] if index else "O"
            if previous == "O" and not _starts_entity(words, index):
                continue
            previous2 = out[index - 2] if index > 1 else "O"
            # Every token after an entity is read too, until one is labelled "O".
            while True:
                label = self.predict(features(words, index, previous, previous2, self.common))
                out[index] = label
                index += 1
                if label == "O" or index == len(words):
                    break
                previous2, previous = previous, label
            done = index
        return out

    def inspect(self, text: str) -> list[Finding]:
        labels = self.labels(TOKEN.findall(text))
        if all(kind not in labels for kind in EMITTED):
            return []  # the common case: no token offsets needed
        return list(spans(tokenize(text), labels))


def spans(tokens: list[Token], labels: list[str]) -> Iterator[Finding]:
    """Runs of one emitted label become findings, trimmed of punctuation at either end."""
    index = 0
    while index < len(tokens):
        kind = EMITTED.get(labels[index])
        if kind is None:
            index += 1
            continue
        end = index
        while end + 1 < len(tokens) and labels[end + 1] == labels[index]:
            end += 1
        first, last = index, end
        while first <= last and not tokens[first].text[0].isalnum():
            first += 1
        while last >= first and not tokens[last].text[0].isalnum():
            last -= 1
        if first <= last:
            yield Finding(tokens[first].start, tokens[last].end, kind, 0.8, "tagger")
        index = end + 1
