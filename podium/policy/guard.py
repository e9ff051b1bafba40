"""The injection and jailbreak screen: heuristics for known attack families plus a small
hashed-n-gram logistic-regression classifier trained on the jailbreak train split.

``InjectionScreen.inspect(text)`` returns findings (the Detector socket); ``verdict(text)``
folds them into one score and the signals that fired. The classifier artifact ships in
``podium/data/policy/injection.npz`` and is rebuilt by ``python -m podium.policy.train_guard``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import string
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from podium.policy.findings import Finding
from podium.policy.needles import Needles
from podium.policy.ngrams import weight_sum
from podium.policy.pii import ASCII_SHAPE

MODEL_RESOURCE = "policy/injection.npz"


@dataclass(frozen=True, slots=True)
class Signal:
    """One heuristic family: a compiled pattern, how strongly a match suggests an attack, and
    the lower-case words of which every match contains at least one. Looking for those words
    first costs a few microseconds per KB; the pattern itself (alternations after a word
    boundary, which the regex engine cannot skip ahead for) costs tens, so it runs only on
    text that has one of them."""

    name: str
    pattern: re.Pattern[str]
    weight: float
    needs: tuple[str, ...]


def _rx(pattern: str) -> re.Pattern[str]:
    # Matched against lower-cased text: cheaper than IGNORECASE. The patterns use only
    # lower-case escapes (\b, \s, \d), so lower-casing them keeps their meaning.
    return re.compile(pattern.lower(), re.DOTALL)


def _words(needs: str) -> tuple[str, ...]:
    return tuple(needs.split("|"))


# Phrases from the well-known attack families. Each is written to need the attack's framing,
# not just a topic word, so that a benign question about "instructions" does not fire.
SIGNALS: tuple[Signal, ...] = (
    Signal(
        "instruction_override",
        _rx(
            r"\b(ignore|disregard|forget|override|bypass|skip)\b.{0,25}?\b(all|any|the|your|my|these|those|"
            r"previous|prior|above|earlier|preceding|original)\b.{0,25}?\b(instructions?|prompts?|"
            r"rules|directives|guidelines|restrictions|programming|policies|polic(y|ies))\b"
        ),
        0.9,
        _words("ignore|disregard|forget|override|bypass|skip"),
    ),
    Signal(
        "dan_family",
        _rx(
            r"\bdo anything now\b|\bDAN\s*(mode|\d|:|\])|\[DAN\]|\bdeveloper mode\b|"
            r"\bjailbr(ea|o)k(en)?\b|\banti-?dan\b|\bSTAN\b.{0,40}strive to avoid norms|"
            r"\bDUDE\b.{0,60}\banything\b|\bevil confidant\b|\bAIM\b.{0,80}machiavellian"
        ),
        0.9,
        _words(
            "do anything now|dan|developer mode|jailbr|strive to avoid norms|dude|evil confidant|"
            "machiavellian"
        ),
    ),
    Signal(
        "unrestricted_persona",
        _rx(
            r"\b(no|without|zero|free of|freed from|not bound by|ignores?|disregards?)\s+"
            r"(any\s+|all\s+)?(ethical|moral|content|safety|openai'?s?)\s+(restrictions|filters|censorship|guidelines|"
            r"limitations|boundaries|constraints|policies|principles|rules)\b|"
            r"\b(no|without)\s+(any\s+)?(restrictions|filters|censorship)\s+(or|and|whatsoever)\b|"
            r"\b(you are|you're|act as|pretend (to be|you are)|from now on)\b.{0,80}?\b(unfiltered|"
            r"uncensored|amoral|unrestricted|unethical|without morals)\b"
        ),
        0.7,
        _words("ethical|moral|content|safety|openai|restrict|filter|censor"),
    ),
    Signal(
        "system_prompt_extraction",
        _rx(
            r"\b(reveal|show|print|repeat|output|display|leak|dump|tell me|what (is|are|were)|"
            r"give me|encode|translate|spell out|console\.log)\b.{0,40}?\b(your |the )?"
            r"(system|initial|hidden|original|secret|internal|developer|pre-?)\s*[- ]?"
            r"(prompt|instructions?|message|configuration|rules|directives)\b|"
            r"\b(repeat|print|output)\b.{0,20}\b(the )?(text|words|everything|content) "
            r"(above|before)|"
            r"\bmy instructions are:|\binitiali[sz]ation string\b|\bsystemprompt\b"
        ),
        0.8,
        _words(
            "prompt|instruction|message|configuration|rules|directives|above|before|ation string"
        ),
    ),
    Signal(
        "system_prompt_extraction",
        _rx(
            r"\b(instructions|text|prompt|message)s? you (were|have been) given\b|"
            r"\bwhat (were|was|have) you (been )?(told|instructed)\b|\bi was instructed to\b|"
            r"\b(the|your) system (prompt|instructions?|message) (is|are|was)\b|"
            r"\b(see|show|get|need|read|give|display)\b.{0,20}\bthe system (prompt|instructions)\b|"
            r"\brepeat (the (above|previous)|this entire|everything)\b|"
            r"\bwhat (are|were) you not (supposed|allowed|permitted) to\b|"
            r"\b(opposite|reverse|negation) of your (system |initial )?"
            r"(instructions|prompt|rules)\b|"
            r"\byour (starting|initial|original|first|hidden|secret) "
            r"(instructions|prompt|directives)\b|"
            r"\b(given|told) (to you )?(initially|at the (beginning|start))\b"
        ),
        0.8,
        _words(
            "given|told|instruct|system |repeat |supposed|allowed|permitted|opposite|reverse|"
            "negation|prompt|directive"
        ),
    ),
    Signal(
        "authority_framing",
        _rx(
            r"\b(administrator|admin|developer|maintenance|debug|god|sudo|root) (override|mode|"
            r"access)\b|\byou are now in\b.{0,30}\bmode\b"
        ),
        0.6,
        _words("override|mode|access"),
    ),
)

# Every word any signal needs, looked for in one pass. The shape lower-cases ASCII capitals:
# an ASCII text is searched as it is, with the same answers as its lower-cased copy, which
# is then made only when some word occurs.
SIGNAL_WORDS = Needles(
    sorted({word for signal in SIGNALS for word in signal.needs}),
    shape=bytes.maketrans(string.ascii_uppercase.encode(), string.ascii_lowercase.encode()),
)
_SIGNAL_BITS = tuple(SIGNAL_WORDS.bits(signal.needs) for signal in SIGNALS)

_INVISIBLE = re.compile(
    "[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4}){6,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# ASCII bytes to b"b" for the base64 alphabet, else b".": the shape _BASE64 needs 24 b"b" of
# (UTF-8 bytes of other characters are all b".").
_BASE64_SHAPE = bytes(
    ord("b") if chr(code).isascii() and (chr(code).isalnum() or chr(code) in "+/") else ord(".")
    for code in range(256)
)
_BASE64_RUN = Needles(["b" * 24], shape=_BASE64_SHAPE)
_TOKEN = re.compile(r"\S+")
_WORDISH = re.compile(r"[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]+")


def _script(char: str) -> str:
    code = ord(char)
    if code < 0x250:
        return "latin"
    if 0x370 <= code < 0x400:
        return "greek"
    if 0x400 <= code < 0x530:
        return "cyrillic"
    return "other"


def homoglyph_words(text: str) -> int:
    """Words that mix Latin letters with Greek or Cyrillic ones (``jаilbreаk`` with a Cyrillic
    ``а``): a smuggling trick that defeats keyword filters and is rare in honest text."""
    mixed = 0
    for word in _WORDISH.findall(text):
        if len(word) < 3 or word.isascii():
            continue
        scripts = {_script(char) for char in word}
        if "latin" in scripts and scripts & {"greek", "cyrillic"}:
            mixed += 1
    return mixed


_TURKISH = frozenset("şğçöüİŞĞÇÖÜ")


def _dotless(text: str) -> bool:
    """IPA and dotless letters that pass for ``a``, ``g``, ``i`` in English words. The dotless
    ``ı`` is ordinary Turkish, so it counts only in text without other Turkish letters."""
    if any(char in text for char in "\u0251\u0261\u026a"):
        return True
    return "\u0131" in text and not _TURKISH.intersection(text)


def encoded_payload(text: str) -> bool:
    """A base64 run that decodes to mostly printable text: a way to slip instructions past a
    keyword screen."""
    if not _BASE64_RUN.found(text):
        return False  # no 24 base64 characters in a row: the usual case, decided in C
    # A run of 24 base64 characters lies inside one whitespace-free token.
    for token in text.split():
        if len(token) >= 24 and any(_printable_base64(m.group(0)) for m in _BASE64.finditer(token)):
            return True
    return False


def _printable_base64(blob: str) -> bool:
    if len(blob) < 24 or blob.isalpha() or blob.isdigit():
        return False
    try:
        decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    printable = sum(32 <= byte < 127 or byte in (9, 10, 13) for byte in decoded)
    return bool(decoded) and printable / len(decoded) > 0.9


_ODD_SYMBOLS = frozenset("[]{}()!`|\\*=<>~^_%$#@+")
_FUSED_SYMBOLS = frozenset("[]{}!`|\\*~^%$#@")
_DROP_ODD_SYMBOLS = {ord(symbol): None for symbol in _ODD_SYMBOLS}
_ODD_BYTES = "".join(sorted(_ODD_SYMBOLS)).encode("ascii")
_GLUED = re.compile(r"[a-z]{2}[A-Z][a-z]")
# What gibberish_score counts, looked for in one pass: the odd symbols (which ASCII_SHAPE
# keeps as they are) and _GLUED's matches, which in ASCII_SHAPE are exactly the places of
# "aaAa" (UTF-8 bytes of other characters are neither letters nor symbols there).
_SUSPECTS = Needles(["aaAa", *sorted(_ODD_SYMBOLS)], shape=ASCII_SHAPE)
_GLUED_BIT = _SUSPECTS.bits(["aaAa"])
_LABEL = re.compile(r"[(\[]\w{1,3}[)\]][.:,]?")


def _odd(token: str) -> bool:
    if token.startswith(("http", "www.")) or "/" in token:
        return False
    if not any(char.isalnum() for char in token):
        return any(char in _ODD_SYMBOLS for char in token)
    if _GLUED.search(token):
        return True
    if _LABEL.fullmatch(token):  # "(A)." in a list of options
        return False
    # Parentheses, underscores and operators fused to names are ordinary code ("add(2,",
    # "a_b=c"); the rarer symbols are not.
    return sum(char in _FUSED_SYMBOLS for char in token) >= 2


def gibberish_score(text: str) -> float:
    """How much the densest 40-token window looks like an optimiser-found adversarial suffix:
    bracket and symbol runs, words glued across case (``similarlyNow``), symbols fused to
    letters. 0 for ordinary prose, towards 1 for GCG-style token soup."""
    text = text[-4000:]
    # Fast exit: too few odd symbols and glued words anywhere for any window to score.
    found = _SUSPECTS.found(text)
    if not found:
        return 0.0  # the usual case, decided in C
    suspects = 0
    if found & ~_GLUED_BIT:  # some odd symbol: count them
        if text.isascii():  # bytes.translate deletes in C; str.translate looks up each character
            raw = text.encode("ascii")
            suspects = len(raw) - len(raw.translate(None, _ODD_BYTES))
        else:
            suspects = len(text) - len(text.translate(_DROP_ODD_SYMBOLS))
    if suspects < 5 and found & _GLUED_BIT:
        suspects += len(_GLUED.findall(text))
    if suspects < 5:
        return 0.0
    tokens = _TOKEN.findall(text)
    if len(tokens) < 8:
        return 0.0
    odd = [1 if _odd(token) else 0 for token in tokens]
    window = min(40, len(odd))
    running = best = sum(odd[:window])
    for index in range(window, len(odd)):
        running += odd[index] - odd[index - window]
        best = max(best, running)
    ratio = best / window
    return max(0.0, min(1.0, (ratio - 0.12) / 0.2))


@dataclass(slots=True)
class Verdict:
    score: float  # 0..1, the strongest evidence of an attack
    signals: list[str] = field(default_factory=list)
    classifier: float = 0.0

    @property
    def flagged(self) -> bool:
        return bool(self.signals)


class Classifier:
    """Logistic regression over hashed character and word n-grams (numpy only)."""

    def __init__(self, weights: npt.NDArray[np.float32], bias: float, bits: int, threshold: float):
        self.weights = weights
        self.bias = bias
        self.bits = bits
        self.threshold = threshold

    @classmethod
    def load(cls, path: Path | None = None) -> Classifier:
        if path is None:
            with resources.as_file(resources.files("podium.data").joinpath(MODEL_RESOURCE)) as p:
                return cls._read(p)
        return cls._read(path)

    @classmethod
    def _read(cls, path: Path) -> Classifier:
        with np.load(path) as archive:
            weights = archive["weights"].astype(np.float32)
            bias = float(archive["bias"])
            bits = int(archive["bits"])
            threshold = float(archive["threshold"])
        return cls(weights, bias, bits, threshold)

    def probability(self, text: str) -> float:
        total, count = weight_sum(text, self.bits, self.weights)
        if count == 0:
            return 1.0 / (1.0 + math.exp(-self.bias))
        logit = total / math.sqrt(count) + self.bias
        # max(-30.0, min(30.0, logit)) spelled out: the builtins parse keyword arguments.
        clipped = logit if logit < 30.0 else 30.0
        clipped = clipped if clipped > -30.0 else -30.0
        return 1.0 / (1.0 + math.exp(-clipped))


class InjectionScreen:
    """Heuristics first (cheap, explainable), then the classifier; ``threshold`` is where the
    classifier's probability counts as a finding (default: the one chosen at training time for
    a false-positive rate of at most 5% on held-out benign prompts)."""

    def __init__(
        self,
        classifier: Classifier | None = None,
        *,
        threshold: float | None = None,
        use_classifier: bool = True,
    ) -> None:
        self._classifier = classifier
        self._threshold = threshold
        self.use_classifier = use_classifier

    @cached_property
    def classifier(self) -> Classifier:
        return self._classifier or Classifier.load()

    @cached_property
    def threshold(self) -> float:
        return self._threshold if self._threshold is not None else self.classifier.threshold

    def verdict(self, text: str) -> Verdict:
        if not text:
            return Verdict(score=0.0)
        # Gathered in locals, the Verdict made once at the end (positional arguments: a
        # dataclass made with keywords costs a thousand instructions more).
        score = 0.0
        signals: list[str] = []
        # ASCII text has no invisible characters, homoglyphs or dotless letters, and NFKC
        # leaves it as it is: the common case skips all three.
        ascii_only = text.isascii()
        visible = text if ascii_only else _INVISIBLE.sub("", text)
        normalised = visible if ascii_only else unicodedata.normalize("NFKC", visible)
        if ascii_only:  # SIGNAL_WORDS' shape lower-cases it
            found = SIGNAL_WORDS.found(normalised)
            lowered = normalised.lower() if found else normalised
        else:  # lower() maps a few other letters to ASCII ones ("İ" to "i" and a dot above)
            lowered = normalised.lower()
            found = SIGNAL_WORDS.found(lowered)
        if found:
            for signal, bits in zip(SIGNALS, _SIGNAL_BITS, strict=True):
                if found & bits and signal.pattern.search(lowered) is not None:
                    signals.append(signal.name)
                    score = max(score, signal.weight)
        if len(visible) != len(text):
            signals.append("invisible_characters")
            score = max(score, 0.7)
        if not ascii_only and (homoglyph_words(text) or _dotless(text)):
            signals.append("homoglyph_smuggling")
            score = max(score, 0.8)
        if encoded_payload(text):
            signals.append("encoded_payload")
            score = max(score, 0.6)
        gibberish = gibberish_score(text)
        if gibberish >= 0.5:
            signals.append("adversarial_suffix")
            score = max(score, gibberish)
        probability = 0.0
        if self.use_classifier:
            probability = self.classifier.probability(normalised)
            if probability >= self.threshold:
                signals.append("classifier")
                score = max(score, probability)
        return Verdict(score, signals, probability)

    def inspect(self, text: str) -> list[Finding]:
        verdict = self.verdict(text)
        if not verdict.flagged:
            return []
        return [
            Finding(start=0, end=len(text), kind="INJECTION", score=verdict.score, source=signal)
            for signal in verdict.signals
        ]
