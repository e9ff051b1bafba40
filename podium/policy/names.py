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
    before = words[index - 1] if index > 0 else "<s>"
    before2 = words[index - 2] if index > 1 else "<s>"
    after = words[index + 1] if index + 1 < len(words) else "</s>"
    after2 = words[index + 2] if index + 2 < len(words) else "</s>"
    word_shape = shape(word)
    start = before in BOUNDARY or index == 0
    usual = lower in common
    return [
        f"lex={usual}|{start}|{word_shape}",
        f"lex_n={usual}|{after.lower() in common}",
        "b",
        f"w={lower}",
        f"s3={lower[-3:]}",
        f"s2={lower[-2:]}",
        f"p3={lower[:3]}",
        f"sh={word_shape}",
        f"len={min(len(word), 12)}",
        f"st={start}|{word_shape}",
        f"pw={before.lower()}",
        f"pw2={before2.lower()}",
        f"nw={after.lower()}",
        f"nw2={after2.lower()}",
        f"psh={shape(before)}",
        f"nsh={shape(after)}",
        f"pt={previous}",
        f"pt2={previous}|{previous2}",
        f"pt_sh={previous}|{word_shape}",
        f"pt_w={previous}|{lower}",
        f"pw_w={before.lower()}|{lower}",
        f"nsh_sh={word_shape}|{shape(after)}",
    ]


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
        """One label per token text. Most tokens are not candidates and never reach the model;
        the cheap cases of :func:`is_candidate` are inlined here, the tagger's hot loop."""
        out: list[str] = []
        previous = previous2 = "O"
        for index, word in enumerate(words):
            if previous == "O":
                first = word[0]
                if first in _LOWER_ASCII:
                    candidate = index > 0 and words[index - 1].lower() in TRIGGERS
                elif first in _INERT_ASCII:
                    candidate = False
                else:
                    candidate = is_candidate(word, previous, words[index - 1] if index else "")
            else:
                candidate = True
            label = (
                self.predict(features(words, index, previous, previous2, self.common))
                if candidate
                else "O"
            )
            out.append(label)
            previous2, previous = previous, label
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
