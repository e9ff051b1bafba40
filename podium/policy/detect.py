"""The PII detector Podium runs: structured patterns, the name and address tagger, and
optionally Presidio (``pip install 'podium[presidio]'``), merged into non-overlapping spans."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

from podium.policy.findings import Detector, Finding
from podium.policy.names import NameTagger
from podium.policy.pii import PatternDetector

# The types each engine reports, in Podium's vocabulary.
PATTERN_TYPES = (
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "DATE_OF_BIRTH",
    "PASSPORT",
    "DRIVER_LICENSE",
    "ID_NUMBER",
    "ACCOUNT_NUMBER",
)
TAGGER_TYPES = ("PERSON", "ADDRESS")
PRESIDIO_TYPES = {
    "PERSON": "PERSON",
    "LOCATION": "ADDRESS",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_PASSPORT": "PASSPORT",
    "US_DRIVER_LICENSE": "DRIVER_LICENSE",
}


def resolve(groups: Sequence[Sequence[Finding]]) -> list[Finding]:
    """Non-overlapping findings. Earlier groups win; a later finding that overlaps an accepted
    one keeps only its uncovered pieces (so an address around a phone number still hides
    the rest of the address)."""
    accepted: list[Finding] = []
    for group in groups:
        for finding in sorted(group, key=lambda f: (f.start, -(f.end - f.start))):
            pieces = [(finding.start, finding.end)]
            for other in accepted:
                cut: list[tuple[int, int]] = []
                for start, end in pieces:
                    if other.end <= start or other.start >= end:
                        cut.append((start, end))
                        continue
                    if other.start > start:
                        cut.append((start, other.start))
                    if other.end < end:
                        cut.append((other.end, end))
                pieces = cut
            for start, end in pieces:
                if end - start >= 2:
                    accepted.append(
                        Finding(start, end, finding.kind, finding.score, finding.source)
                    )
    accepted.sort(key=lambda f: f.start)
    return accepted


def _trim(text: str, finding: Finding) -> Finding | None:
    start, end = finding.start, finding.end
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    if end - start < 2:
        return None
    return Finding(start, end, finding.kind, finding.score, finding.source)


def _lone_numbers_dropped(text: str, findings: list[Finding]) -> list[Finding]:
    """An address finding that is only a number ("44", "2012") counts only next to another
    part of an address (a house number or postcode beside its street); alone it is a number."""
    addresses = [f for f in findings if f.kind == "ADDRESS"]
    kept: list[Finding] = []
    for finding in findings:
        if finding.kind == "ADDRESS" and not any(c.isalpha() for c in finding.text(text)):
            near = any(
                other is not finding
                and any(c.isalpha() for c in other.text(text))
                and (abs(other.start - finding.end) <= 40 or abs(finding.start - other.end) <= 40)
                for other in addresses
            )
            if not near:
                continue
        kept.append(finding)
    return kept


class PresidioDetector:
    """Presidio's analyzer with a spaCy model, when installed. ~100 ms per KB: an option for
    offline scoring or low-traffic deployments, not the default hot path."""

    def __init__(self, model: str = "en_core_web_sm", threshold: float = 0.35) -> None:
        self.model = model
        self.threshold = threshold

    @cached_property
    def analyzer(self) -> Any:
        try:
            analyzer = importlib.import_module("presidio_analyzer")
            nlp_engine = importlib.import_module("presidio_analyzer.nlp_engine")
        except ImportError as error:  # pragma: no cover - depends on the optional extra
            raise RuntimeError(
                "the presidio engine needs the optional extra: pip install 'podium[presidio]'"
            ) from error
        provider = nlp_engine.NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "spacy",
                "models": [{"lang_code": "en", "model_name": self.model}],
            }
        )
        return analyzer.AnalyzerEngine(
            nlp_engine=provider.create_engine(), supported_languages=["en"]
        )

    def inspect(self, text: str) -> list[Finding]:
        results = self.analyzer.analyze(text=text, language="en", score_threshold=self.threshold)
        return [
            Finding(r.start, r.end, PRESIDIO_TYPES[r.entity_type], float(r.score), "presidio")
            for r in results
            if r.entity_type in PRESIDIO_TYPES
        ]


class PiiDetector:
    """``engines`` in priority order: ``patterns`` (checksummed identifiers), ``tagger``
    (names and addresses), ``presidio`` (optional extra)."""

    def __init__(
        self,
        engines: Sequence[str] = ("patterns", "tagger"),
        *,
        types: Sequence[str] | None = None,
        tagger: NameTagger | None = None,
    ) -> None:
        self.engines = tuple(engines)
        self.types = frozenset(types) if types is not None else None
        self._tagger = tagger
        self._patterns = PatternDetector()

    @cached_property
    def tagger(self) -> NameTagger:
        return self._tagger or NameTagger.load()

    @cached_property
    def presidio(self) -> PresidioDetector:
        return PresidioDetector()

    @cached_property
    def detectors(self) -> list[Detector]:
        known: dict[str, Callable[[], Detector]] = {
            "patterns": lambda: self._patterns,
            "tagger": lambda: self.tagger,
            "presidio": lambda: self.presidio,
        }
        unknown = [name for name in self.engines if name not in known]
        if unknown:
            raise ValueError(f"unknown PII engine {unknown[0]!r} (one of: {', '.join(known)})")
        return [known[name]() for name in self.engines]

    def inspect(self, text: str) -> list[Finding]:
        if not text:
            return []
        groups = [detector.inspect(text) for detector in self.detectors]
        if not any(groups):
            return []  # the usual text: nothing found, nothing to resolve, trim or drop
        findings = resolve(groups)
        out: list[Finding] = []
        for finding in findings:
            if self.types is not None and finding.kind not in self.types:
                continue
            trimmed = _trim(text, finding)
            if trimmed is not None:
                out.append(trimmed)
        return _lone_numbers_dropped(text, out)
