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
from podium.policy.name_scores import (
    PackedScores,
    Tagger,
    Winner,
    compiled_tagger,
    compiled_winner,
)
from podium.policy.needles import Needles

MODEL_RESOURCE = "policy/names.json.gz"
LABELS = ("O", "PERSON", "ADDRESS", "ORG", "GPE")
EMITTED = {"PERSON": "PERSON", "ADDRESS": "ADDRESS"}
TOKEN = re.compile(r"\w+(?:['’]\w+)*|\n|[^\w\s]")
_SHAPE_TABLE = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
    "X" * 26 + "x" * 26 + "d" * 10,
)
# The third and later characters of a run of one character (the shape keeps two). Deleting
# them is the same as substituting r"\1\1" for r"(.)\1+", without expanding a template per run.
_REPEAT_BEYOND_TWO = re.compile(r"(?<=(.))(?<=\1\1)\1+")
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
    return _REPEAT_BEYOND_TWO.sub("", word.translate(_SHAPE_TABLE))[:6]


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
        # the headings and labels of documents and mail: a PDF's text starts with them
        "memo",
        "memorandum",
        "agenda",
        "minutes",
        "appendix",
        "annex",
        "addendum",
        "exhibit",
        "invoice",
        "receipt",
        "subject",
        "attachment",
        "attachments",
        "enclosure",
        "summary",
        "abstract",
        "introduction",
        "conclusion",
        "conclusions",
        "references",
        "contents",
        "glossary",
        "section",
        "chapter",
        "figure",
        "regards",
        "sincerely",
    }
)


def _letter(letter: str) -> str:
    """A character class for the characters whose lower case is the ASCII ``letter`` (the
    Kelvin sign is the one non-ASCII such character)."""
    return "[" + letter + letter.upper() + ("\u212a" if letter == "k" else "") + "]"


def _trigger_pattern(*, lowered: bool) -> re.Pattern[str]:
    """Trigger words followed by a lower-case word: spelt with a class per letter, or, for text
    already lower-cased (its length unchanged, so that offsets agree), as plain literals,
    quicker to scan for; that one also matches before a word that was upper-case."""
    words = sorted(TRIGGERS, key=len, reverse=True)
    spell = re.escape if lowered else (lambda word: "".join(map(_letter, word)))
    return re.compile(
        "(?:" + "|".join(_whole_word(spell(word)) for word in words) + r")" + _BEFORE_LOWER
    )


# Followed, on the same line, by a lower-case word.
_BEFORE_LOWER = r"(?=[^\S\n]+[a-z])"


def _whole_word(spelt: str) -> str:
    """``spelt`` (a pattern) not as the end of a longer word, nor after an apostrophe."""
    return rf"{spelt}(?<!\w{spelt})(?<!\w['’]{spelt})"


def _common_by_first() -> list[tuple[str, list[str]]]:
    """COMMON's capitalised and upper-case spellings grouped by first letter, in order, each
    group's rests longest first (so an alternation tries "These" before "The")."""
    by_first: dict[str, list[str]] = {}
    for form in sorted({f for word in COMMON for f in (word.capitalize(), word.upper())}):
        by_first.setdefault(form[0], []).append(form[1:])
    return [
        (first, sorted(ends, key=len, reverse=True)) for first, ends in sorted(by_first.items())
    ]


def _capital_pattern() -> re.Pattern[str]:
    """A token that may be a candidate for its first character (see _MAYBE_CAPITAL)."""
    common = "|".join(
        f"(?<={first})(?:" + "|".join(map(re.escape, ends)) + ")"
        for first, ends in _common_by_first()
    )
    return re.compile(
        r"[^\x00-/:-@\[-\x7f\s‘’‚“”„–—…•·«»]"
        r"(?:(?<=\W)|(?<!\w\w)(?<!\w['’]\w)(?!(?:" + common + r")(?!\w)(?!['’]\w))\w*(?:['’]\w+)*)"
    )


def _ascii_capital_pattern() -> re.Pattern[str]:
    """_capital_pattern for ASCII text, to match at an A-Z or 0-9 that str.find found (a
    regular expression's own scan costs far more per character)."""
    common = "|".join(
        re.escape(first) + "(?:" + "|".join(map(re.escape, ends)) + ")"
        for first, ends in _common_by_first()
    )
    return re.compile(r"(?<!\w)(?<!\w')(?!(?:" + common + r")(?!\w)(?!'\w))\w+(?:'\w+)*")


# With the previous label "O", a token is a candidate only if it starts with a capital, a
# digit or a non-ASCII letter, or is a lower-case word after a trigger word. These patterns
# find such tokens in C, so that ordinary lower-case words never reach Python. They may find
# more than is_candidate accepts (inspect checks each), never less.
# Trigger words followed by a lower-case word: in the text, in the lower-cased text (when
# lower-casing keeps the length, so offsets agree), and one pattern per trigger word for
# lower-cased ASCII text ("with " to look for with str.find, then the pattern).
_TRIGGER_BEFORE_LOWER = _trigger_pattern(lowered=False)
_LOWERED_TRIGGER_BEFORE_LOWER = _trigger_pattern(lowered=True)
_TRIGGER_PATTERNS = tuple(
    (word + " ", re.compile(_whole_word(re.escape(word)) + _BEFORE_LOWER))
    for word in sorted(TRIGGERS)
)
_TRIGGER_WORDS = Needles([word for word, _ in _TRIGGER_PATTERNS])
# ASCII bytes to b"C" where a capital token may start (A-Z, 0-9), b"S" for the spaces other
# than " " and newlines, else b".".
_ASCII_CLASSES = bytes(
    ord("C")
    if code < 128 and chr(code) in string.ascii_uppercase + string.digits
    else ord("S")
    if code < 128 and chr(code).isspace() and chr(code) not in " \n"
    else ord(".")
    for code in range(256)
)
# Tokens starting with a capital (other than COMMON words spelt "The" or "THE"), a digit or
# any non-ASCII character but common punctuation (a few symbols are upper case: circled
# letters); and, for ASCII text, such a token at a given position.
_MAYBE_CAPITAL = _capital_pattern()
_ASCII_CAPITAL = _ascii_capital_pattern()
# The next two tokens from a position (forwards, or backwards in the reversed text).
_TWO_TOKENS = re.compile(rf"[^\S\n]*({TOKEN.pattern})(?:[^\S\n]*({TOKEN.pattern}))?")
_BEFORE_WINDOW = 64  # characters reversed at first to find the two tokens before


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


def _shape(word: str) -> str:
    """shape(word), without the cache for numbers (the shape of n ASCII digits is "dd", or "d"
    for one): one-off numbers would only push the words traffic repeats out of it."""
    if word.isdigit() and word.isascii():
        return "dd" if len(word) > 1 else "d"
    return shape(word)


def _triggers_before_lower(text: str, classes: bytes | None) -> list[tuple[int, int]]:
    """The spans of trigger words followed by a lower-case word (and perhaps a few followed
    by an upper-case one), in order. ``classes``: the text through _ASCII_CLASSES, if ASCII."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two: offsets would drift
        return [found.span() for found in _TRIGGER_BEFORE_LOWER.finditer(text)]
    if classes is None or b"S" in classes:
        return [found.span() for found in _LOWERED_TRIGGER_BEFORE_LOWER.finditer(lowered)]
    # ASCII text whose only spaces are " " and newlines: a trigger word counts only if a
    # space follows it, so str.find (far quicker than a regular expression's scan) finds
    # where each might be, and the pattern checks only there.
    present = _TRIGGER_WORDS.found(lowered)
    if not present:  # the usual case
        return []
    spans_found = []
    while present:  # the words found, lowest bit first: usually one or two
        bit = present & -present
        present ^= bit
        word, pattern = _TRIGGER_PATTERNS[bit.bit_length() - 1]
        index = lowered.find(word)
        while index >= 0:
            found = pattern.match(lowered, index)
            if found is not None:
                spans_found.append(found.span())
            index = lowered.find(word, index + 1)
    spans_found.sort()
    return spans_found


def _next_capital(text: str, classes: bytes | None, pos: int) -> tuple[int, int] | None:
    """The span of the first token from ``pos`` that _MAYBE_CAPITAL finds. ``classes``: the
    text through _ASCII_CLASSES, if ASCII."""
    if classes is None:
        found = _MAYBE_CAPITAL.search(text, pos)
        return None if found is None else found.span()
    index = classes.find(b"C", pos)
    while index >= 0:
        found = _ASCII_CAPITAL.match(text, index)
        if found is not None:
            return found.span()
        index = classes.find(b"C", index + 1)
    return None


class NameTagger:
    def __init__(self, weights: dict[str, list[float]], common: frozenset[str] = frozenset()):
        self.weights = weights
        self.common = common
        self._packed = PackedScores.build(weights, LABELS)
        self._winner: Winner | None = None
        self._compiled: Tagger | None = None
        if self._packed is not None:
            self._winner = compiled_winner(self._packed) or self._packed.winner
            self._compiled = compiled_tagger(
                self._packed, LABELS, common, COMMON, TRIGGERS, tuple(EMITTED)
            )

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
        """One label per token text: the reference form of what :meth:`inspect` computes
        (training and tests label token lists)."""
        out: list[str] = []
        previous = previous2 = "O"
        for index, word in enumerate(words):
            if previous != "O" or is_candidate(word, previous, words[index - 1] if index else ""):
                label = self.predict(features(words, index, previous, previous2, self.common))
            else:
                label = "O"
            out.append(label)
            previous2, previous = previous, label
        return out

    def inspect(self, text: str) -> list[Finding]:
        """Findings for the runs of PERSON and ADDRESS tokens, exactly as tokenising the whole
        text and calling :meth:`labels` would give, at a fraction of the cost: only the tokens
        that may start an entity are found (in C), and from each the tagger walks forward for
        as long as the labels ask it to. Ordinary lower-case words never reach Python. ASCII
        text goes to the C tagger when it was built, which leaves a close call to this one."""
        if self._compiled is not None:
            runs = self._compiled(text)
            if runs is not None:
                return [
                    Finding(start, end, EMITTED[LABELS[label]], 0.8, "tagger")
                    for start, end, label in runs
                ]
        classes = text.encode().translate(_ASCII_CLASSES) if text.isascii() else None
        triggers = _triggers_before_lower(text, classes)
        findings: list[Finding] = []
        next_trigger = 0
        capital: tuple[int, int] | None = None
        capitals_from = -1  # where ``capital`` was looked for; -1: not yet
        pos = 0
        while True:
            while next_trigger < len(triggers) and triggers[next_trigger][0] < pos:
                next_trigger += 1
            if capitals_from < 0 or (capital is not None and capital[0] < pos):
                capital = _next_capital(text, classes, pos)
                capitals_from = pos
            if next_trigger < len(triggers) and (
                capital is None or triggers[next_trigger][0] <= capital[0]
            ):
                start, end = triggers[next_trigger]
                next_trigger += 1
                word = text[start:end]
                # A capitalised trigger may be a candidate itself ("Mr"); a lower-case one
                # was settled with the token before it.
                if not (word[0].isupper() and word.lower() not in COMMON):
                    following = TOKEN.search(text, end)
                    if following is None or not is_candidate(following.group(), "O", word):
                        continue  # an upper-case word: the capital scan finds it
                    word = following.group()
                    start, end = following.span()
            elif capital is not None:
                start, end = capital
                word = text[start:end]
                first = word[0]
                if first.isupper():
                    candidate = word.lower() not in COMMON
                else:
                    candidate = first.isdigit() or (first.isalpha() and not first.isascii())
                if not candidate:
                    pos = end
                    continue
            else:
                return findings
            pos = self._walk(text, word, start, end, findings)

    def _walk(self, text: str, word: str, start: int, end: int, out: list[Finding]) -> int:
        """Labels the candidate ``word`` (at ``start:end``, after an ``O`` token) and every
        token after it up to the first that is labelled ``O`` and followed by a
        non-candidate; appends the run's findings and returns where scanning resumes."""
        # The two tokens before: the token pattern reads the same backwards.
        size = len(text)
        before = before2 = "<s>"
        window = _BEFORE_WINDOW
        while True:
            behind = text[max(0, start - window) : start][::-1]
            pair = _TWO_TOKENS.match(behind)
            # Unless the window reaches the start of the text, the second token must end
            # inside it, or it might go on beyond.
            if start <= window or (
                pair is not None and pair.group(2) is not None and pair.end() < len(behind)
            ):
                break
            window *= 4
        if pair is not None:
            first, second = pair.groups()
            before = first[::-1]
            if second is not None:
                before2 = second[::-1]
        # The two tokens after; their spans are asked for only when the walk goes on.
        ahead = _TWO_TOKENS.match(text, end)
        if ahead is None:
            after = after2 = "</s>"
        else:
            after, second = ahead.groups()
            after2 = "</s>" if second is None else second
        after_span: tuple[int, int] | None = None
        after2_span = (-1, -1)
        previous = previous2 = "O"
        run: list[tuple[str, int, int, str]] = []
        emitted = False
        label = self._label
        while True:
            tag = label(word, before, before2, after, after2, previous, previous2)
            run.append((word, start, end, tag))
            if tag == "O":
                # is_candidate(after, "O", word), its quick cases first.
                first_character = after[0]
                if first_character in _LOWER_ASCII:
                    candidate = word.lower() in TRIGGERS
                elif first_character in _INERT_ASCII:
                    candidate = False  # "</s>" too: the end of the text
                else:
                    candidate = after != "</s>" and is_candidate(after, "O", word)
            else:
                emitted = emitted or tag in EMITTED
                candidate = after != "</s>"
            if not candidate:
                break
            if after_span is None:
                assert ahead is not None
                after_span = ahead.span(1)
                after2_span = ahead.span(2) if after2 != "</s>" else (-1, -1)
            before2, before, word = before, word, after
            start, end = after_span
            after, after_span = after2, after2_span
            if after2 != "</s>":
                following = TOKEN.search(text, after2_span[1])
                if following is None:
                    after2 = "</s>"
                else:
                    after2, after2_span = following.group(), following.span()
            previous2, previous = previous, tag
        if after == "</s>":
            resume = size
        elif after_span is not None:
            resume = after_span[0]
        else:
            assert ahead is not None
            resume = ahead.start(1)
        if emitted:
            tokens = [Token(entry[0], entry[1], entry[2]) for entry in run]
            out.extend(spans(tokens, [entry[3] for entry in run]))
        return resume

    def _label(
        self,
        word: str,
        before: str,
        before2: str,
        after: str,
        after2: str,
        previous: str,
        previous2: str,
    ) -> str:
        """``predict(features(...))`` for one token, given its neighbours' texts: the same
        features in the same order (so the same sums), built without a token list."""
        common = self.common
        lower = word.lower()
        before_lower = before.lower()
        after_lower = after.lower()
        word_shape = _shape(word)
        after_shape = shape(after)
        before_shape = shape(before)
        start = before in BOUNDARY or before == "<s>"
        usual = lower in common
        after_usual = after_lower in common
        winner_of = self._winner
        if winner_of is not None:
            winner = winner_of(
                lower,
                len(word),
                word_shape,
                usual,
                start,
                before_lower,
                before2.lower(),
                after_lower,
                after2.lower(),
                before_shape,
                after_shape,
                after_usual,
                previous,
                previous2,
            )
            if winner is not None:
                return LABELS[winner]
        # A close call (or no packed model): the float sums, exactly as predict adds them.
        return self.predict(
            [
                f"lex={usual}|{start}|{word_shape}",
                f"lex_n={usual}|{after_usual}",
                "b",
                "w=" + lower,
                "s3=" + lower[-3:],
                "s2=" + lower[-2:],
                "p3=" + lower[:3],
                "sh=" + word_shape,
                f"len={min(len(word), 12)}",
                f"st={start}|{word_shape}",
                "pw=" + before_lower,
                "pw2=" + before2.lower(),
                "nw=" + after_lower,
                "nw2=" + after2.lower(),
                "psh=" + before_shape,
                "nsh=" + after_shape,
                "pt=" + previous,
                f"pt2={previous}|{previous2}",
                f"pt_sh={previous}|{word_shape}",
                f"pt_w={previous}|{lower}",
                f"pw_w={before_lower}|{lower}",
                f"nsh_sh={word_shape}|{after_shape}",
            ]
        )


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
