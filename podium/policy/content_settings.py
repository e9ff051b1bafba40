"""The ``policy:`` section of podium.yaml: data classes, PII, injection screen, cost ceilings.

Only pydantic and the standard library here: podium.config imports this module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PII_TYPES = (
    "PERSON",
    "ADDRESS",
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

InjectionAction = Literal["off", "flag", "block", "reroute"]
PiiEngine = Literal["patterns", "tagger", "presidio"]


def _default_engines() -> list[PiiEngine]:
    return ["patterns", "tagger"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PiiSettings(_Strict):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    """``engines`` in priority order: ``patterns`` (checksummed identifiers, always cheap),
    ``tagger`` (names and addresses, sub-millisecond), ``presidio`` (optional extra, ~100 ms
    per KB). ``classes`` maps each detected type to the data class it makes a request.
    ``pseudonymise``: ``auto`` replaces detected values when a worker cleared only for
    pseudonymised data could be chosen; ``always`` whenever PII is found; ``never``."""

    enabled: bool = True
    engines: list[PiiEngine] = Field(default_factory=_default_engines)
    types: list[str] = Field(default_factory=lambda: list(PII_TYPES))
    classes: dict[str, str] = Field(default_factory=dict)  # per type; default: ``class_``
    class_: str | None = Field(None, alias="class")  # default: confidential, if defined
    pseudonymise: Literal["auto", "always", "never"] = "auto"

    @model_validator(mode="after")
    def _known_types(self) -> PiiSettings:
        unknown = sorted(set(self.types) - set(PII_TYPES)) + sorted(
            set(self.classes) - set(PII_TYPES)
        )
        if unknown:
            raise ValueError(
                f"unknown PII type {unknown[0]!r}; known types: {', '.join(PII_TYPES)}"
            )
        return self


class InjectionSettings(_Strict):
    """What to do with a request the screen flags, unless the caller's key says otherwise
    (key metadata ``injection: flag|block|reroute|off``). ``reroute`` narrows the workers to
    ``hardened_workers``."""

    action: InjectionAction = "flag"
    classifier: bool = True
    threshold: float | None = Field(None, gt=0, lt=1)
    hardened_workers: list[str] = Field(default_factory=list)
    max_chars: int = Field(20_000, gt=0)


class CostGuardSettings(_Strict):
    """The router's choice cannot be bought by the prompt. ``max_cost_usd`` caps the
    estimated cost of one request's plan (key metadata ``max_cost_usd`` overrides it);
    ``on_exceed`` refuses or downgrades to the cheapest candidate under the cap. A plan whose
    worker costs ``overspend_ratio`` times the cheapest candidate while the content looks
    easy is recorded, and capped when ``cap_overspend`` is set."""

    max_cost_usd: float | None = Field(None, gt=0)
    on_exceed: Literal["refuse", "downgrade"] = "downgrade"
    output_tokens: int = Field(512, gt=0)  # assumed when the request sets no max_tokens
    overspend_ratio: float = Field(10.0, gt=1)
    easy_tokens: int = Field(300, gt=0)  # prompts shorter than this look easy
    cap_overspend: bool = False


class ContentPolicySettings(_Strict):
    """Data classes in increasing order of sensitivity; ``header`` lets a caller declare one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    enabled: bool = True
    classes: list[str] = Field(
        default_factory=lambda: ["public", "internal", "confidential", "restricted"],
        min_length=1,
    )
    default_class: str | None = None  # the lowest class when unset
    # The detectors read text only: the class a request with images gets at least (unset: no
    # floor, its text alone decides). Set it to fail closed on what no detector can read.
    images_class: str | None = None
    # Likewise for a PDF with no text the detectors could read (a scan, a URL, or
    # ``documents.extract_text`` off). A PDF's text is read like any other.
    documents_class: str | None = None
    header: str = "x-podium-data-class"
    pii: PiiSettings = Field(default_factory=PiiSettings)
    injection: InjectionSettings = Field(default_factory=InjectionSettings)
    cost: CostGuardSettings = Field(default_factory=CostGuardSettings)
    # Texts whose screening results (PII findings, injection verdicts) are remembered per
    # process: clients resend the system prompt and the history every turn. 0 turns it off.
    screen_cache: int = Field(4096, ge=0)

    @model_validator(mode="after")
    def _classes_known(self) -> ContentPolicySettings:
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("data classes must be unique")
        known = set(self.classes)
        for field in ("default_class", "images_class", "documents_class"):
            value = getattr(self, field)
            if value is not None and value not in known:
                raise ValueError(f"{field} {value!r} is not one of {self.classes}")
        for kind, name in self.pii.classes.items():
            if name not in known:
                raise ValueError(f"pii.classes.{kind}: {name!r} is not one of {self.classes}")
        if self.pii.class_ is not None and self.pii.class_ not in known:
            raise ValueError(f"pii.class: {self.pii.class_!r} is not one of {self.classes}")
        return self

    def pii_class(self, kind: str) -> str:
        """The class a request holding PII of ``kind`` gets."""
        chosen = self.pii.classes.get(kind) or self.pii.class_
        if chosen is not None:
            return chosen
        if "confidential" in self.classes:
            return "confidential"
        return self.classes[-2] if len(self.classes) > 1 else self.classes[0]

    @property
    def lowest(self) -> str:
        return self.default_class or self.classes[0]
