"""The price table: list prices per one million tokens, layered from the packaged table, a
prices file, podium.yaml's ``costs:`` section and the configured workers' own prices; and
scenarios (named what-ifs such as "next quarter: -30% on model X")."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from podium.costs.config import (
    CostsConfig,
    PriceEntry,
    PriceFile,
    ScenarioEntry,
    parse_change,
    reached,
)

if TYPE_CHECKING:
    from podium.config import PodiumConfig, Price, WorkerConfig

GRADES: dict[str, int] = {"low": 1, "medium": 2, "high": 3}
STALE_AFTER_DAYS = 90


class PriceError(Exception):
    """A prices file or scenario that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class PriceTierRate:
    """The rates (USD per one million tokens) of every token of a request whose input passes
    ``above`` tokens, resolved: a rate the source left unset is already the base rate."""

    above: int
    input: float
    output: float
    cached_input: float | None = None

    def scaled(self, factor: float) -> PriceTierRate:
        cached = None if self.cached_input is None else self.cached_input * factor
        return dataclasses.replace(
            self, input=self.input * factor, output=self.output * factor, cached_input=cached
        )


@dataclass(frozen=True, slots=True)
class ModelPrice:
    model: str
    vendor: str
    input: float  # USD per one million input tokens
    output: float
    cached_input: float | None = None
    grade: str | None = None  # high | medium | low; None when nobody said
    kind: str = "proprietary"
    context: int | None = None
    tasks: tuple[str, ...] = ()
    batch: float | None = None  # multiplier of the vendor's batch API
    flagship: bool = False
    aliases: tuple[str, ...] = ()
    api_model: str | None = None
    source: str = ""
    as_of: str | None = None
    worker: bool = False  # a worker configured in podium.yaml, priced as configured
    tiers: tuple[PriceTierRate, ...] = ()  # long-prompt rates, ascending by ``above``

    @property
    def rank(self) -> int:
        return GRADES.get(self.grade or "", 0)

    def cost(
        self,
        input_tokens: float,
        output_tokens: float,
        cached_tokens: float = 0.0,
        *,
        batch_share: float = 0.0,
    ) -> float:
        """USD for one request of these (average) sizes; ``batch_share`` of it via batch. A
        request whose input passes a tier's threshold pays that tier's rates on every token,
        as the gateway bills it (``Price.at``)."""
        rates: ModelPrice | PriceTierRate = reached(self.tiers, input_tokens) or self
        cached = min(max(cached_tokens, 0.0), input_tokens)
        cached_rate = rates.cached_input if rates.cached_input is not None else rates.input
        usd = (
            (input_tokens - cached) * rates.input
            + cached * cached_rate
            + output_tokens * rates.output
        ) / 1_000_000
        if batch_share and self.batch is not None:
            usd *= 1 - batch_share + batch_share * self.batch
        return usd

    def scaled(self, factor: float) -> ModelPrice:
        cached = None if self.cached_input is None else self.cached_input * factor
        return dataclasses.replace(
            self,
            input=self.input * factor,
            output=self.output * factor,
            cached_input=cached,
            tiers=tuple(tier.scaled(factor) for tier in self.tiers),
        )


@dataclass(frozen=True, slots=True)
class VendorInfo:
    name: str
    provider: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    pricing: str = ""
    hosting: str = "unknown"
    retention: str = "unknown"
    training: str = "unknown"
    trains_on_data: bool | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    changes: Mapping[str, float]
    description: str = ""

    def factor(self, price: ModelPrice) -> float:
        """1 + the most specific change that applies: model, vendor, grade or kind, then *."""
        keys = (
            price.model,
            *price.aliases,
            f"vendor:{price.vendor}",
            f"grade:{price.grade}",
            f"kind:{price.kind}",
            "*",
        )
        for key in keys:
            if key in self.changes:
                return 1 + self.changes[key]
        return 1.0

    def describe(self) -> str:
        parts = [f"{key} {change:+.0%}" for key, change in self.changes.items()]
        return ", ".join(parts) or "no change"


_DATE_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")
_RELEASE_SUFFIX = re.compile(r"-(latest|preview(-[0-9-]+)?|exp(-[0-9-]+)?)$")
_VERSION_DASH = re.compile(r"(?<=-\d)-(?=\d(?:$|-))")


def normalise(name: str) -> str:
    """The key a model name most likely means: lower case, no dated snapshot or release
    suffix, ``4-5`` spelled ``4.5`` (``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4.5``)."""
    key = name.strip().lower()
    key = _DATE_SUFFIX.sub("", key)
    key = _RELEASE_SUFFIX.sub("", key)
    return _VERSION_DASH.sub(".", key)


@dataclass(slots=True)
class PriceTable:
    models: dict[str, ModelPrice] = field(default_factory=dict)
    vendors: dict[str, VendorInfo] = field(default_factory=dict)
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    as_of: str | None = None
    note: str = ""
    layers: list[str] = field(default_factory=list)  # where the prices came from, in order
    applied: Scenario | None = None

    def lookup(self, name: str) -> ModelPrice | None:
        """The entry for a model name or alias, tolerating vendor prefixes and snapshots;
        None when unknown (never a guess at a similar name)."""
        if name in self.models:
            return self.models[name]
        index = self._index()
        for candidate in _candidates(name):
            if candidate in index:
                return self.models[index[candidate]]
        return None

    def _index(self) -> dict[str, str]:
        index: dict[str, str] = {}
        for key, price in self.models.items():
            for name in (key, *price.aliases):
                index.setdefault(name.lower(), key)
                index.setdefault(normalise(name), key)
        return index

    def vendor(self, name: str) -> VendorInfo:
        return self.vendors.get(name, VendorInfo(name))

    def thresholds(self) -> tuple[int, ...]:
        """Every long-prompt threshold in the table, ascending: where a workload's requests
        must be kept apart by size to be priced as billed."""
        return tuple(sorted({tier.above for price in self.models.values() for tier in price.tiers}))

    def age_days(self, today: dt.date | None = None) -> int | None:
        if not self.as_of:
            return None
        try:
            checked = dt.date.fromisoformat(self.as_of)
        except ValueError:
            return None
        return ((today or dt.date.today()) - checked).days

    def staleness_warning(self, today: dt.date | None = None) -> str | None:
        age = self.age_days(today)
        if age is not None and age > STALE_AFTER_DAYS:
            return (
                f"the price table is {age} days old (as of {self.as_of}); list prices change: "
                "check the vendors' pricing pages and override in podium.yaml or --prices"
            )
        return None

    def scenario(self, spec: str) -> Scenario:
        """A named scenario, or an inline one: ``"gpt-5=-30%,vendor:openai=-10%"``."""
        if spec in self.scenarios:
            return self.scenarios[spec]
        if "=" not in spec:
            known = ", ".join(sorted(self.scenarios)) or "none"
            raise PriceError(f"unknown scenario {spec!r} (known: {known}; or write KEY=-30%,...)")
        changes: dict[str, float] = {}
        for part in spec.split(","):
            key, _, value = part.partition("=")
            try:
                changes[key.strip()] = parse_change(value.strip())
            except ValueError as error:
                raise PriceError(f"scenario {spec!r}: {error}") from None
        return Scenario(name=spec, changes=changes, description="given on the command line")

    def with_scenario(self, scenario: Scenario) -> PriceTable:
        unknown = [
            key
            for key in scenario.changes
            if ":" not in key and key != "*" and self.lookup(key) is None
        ]
        if unknown:
            raise PriceError(
                f"scenario {scenario.name!r} names models not in the price table: "
                + ", ".join(unknown)
            )
        models = {key: price.scaled(scenario.factor(price)) for key, price in self.models.items()}
        return dataclasses.replace(self, models=models, applied=scenario)

    def scaled_vendor(self, vendor: str, factor: float) -> PriceTable:
        models = {
            key: price.scaled(factor) if price.vendor == vendor else price
            for key, price in self.models.items()
        }
        return dataclasses.replace(self, models=models)


def _candidates(name: str) -> Iterable[str]:
    lowered = name.strip().lower()
    yield lowered
    yield normalise(lowered)
    if "/" in lowered:
        tail = lowered.rsplit("/", 1)[1]
        yield tail
        yield normalise(tail)


# -- loading ------------------------------------------------------------------------------------


def _entry(model: str, entry: PriceEntry, base: ModelPrice | None, source: str) -> ModelPrice:
    if base is None:
        missing = [name for name in ("vendor", "input", "output") if getattr(entry, name) is None]
        if missing:
            raise PriceError(
                f"{source}: model {model!r} is new, so it needs {', '.join(missing)} "
                "(an override of a known model may name only what changes)"
            )
        base = ModelPrice(model=model, vendor=str(entry.vendor), input=0.0, output=0.0)
    changes: dict[str, Any] = {"source": entry.source or source}
    for name in (
        "vendor",
        "input",
        "output",
        "cached_input",
        "grade",
        "kind",
        "context",
        "batch",
        "flagship",
        "as_of",
        "api_model",
    ):
        value = getattr(entry, name)
        if value is not None:
            changes[name] = value
    if entry.tasks is not None:
        changes["tasks"] = tuple(entry.tasks)
    if entry.aliases is not None:
        changes["aliases"] = tuple(entry.aliases)
    price = dataclasses.replace(base, **changes)
    if entry.tiers is None:
        return price
    # Resolved against this entry's base rates, so a tier states what a long prompt pays
    # whatever later layers do to the base price.
    tiers = tuple(
        PriceTierRate(
            above=tier.above,
            input=price.input if tier.input is None else tier.input,
            output=price.output if tier.output is None else tier.output,
            cached_input=price.cached_input if tier.cached_input is None else tier.cached_input,
        )
        for tier in entry.tiers
    )
    return dataclasses.replace(price, tiers=tiers)


def apply_file(table: PriceTable, data: PriceFile, source: str) -> None:
    """Layer a prices file (or the packaged table) over ``table``, in place."""
    if data.as_of:
        table.as_of = data.as_of if not table.layers else min(data.as_of, table.as_of or "9999")
    if data.note:
        table.note = data.note
    for name, vendor in data.vendors.items():
        old = table.vendors.get(name, VendorInfo(name))
        updates = {key: value for key, value in vendor.model_dump().items() if value is not None}
        table.vendors[name] = dataclasses.replace(old, **updates)
    for model, entry in data.models.items():
        base = table.models.get(model)
        if base is None and (known := table.lookup(model)) is not None:
            model, base = known.model, known
        page = table.vendors.get(entry.vendor or (base.vendor if base else ""))
        fallback_source = page.pricing if page and page.pricing and not table.layers else source
        price = _entry(model, entry, base, fallback_source)
        if price.as_of is None:
            price = dataclasses.replace(price, as_of=data.as_of)
        table.models[model] = price
    _add_scenarios(table, data.scenarios)
    table.layers.append(source)


def _add_scenarios(table: PriceTable, scenarios: Mapping[str, ScenarioEntry]) -> None:
    for name, scenario in scenarios.items():
        table.scenarios[name] = Scenario(
            name=name, changes=dict(scenario.changes), description=scenario.description
        )


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid prices"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def read_price_file(path: Path) -> PriceFile:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PriceError(f"{path}: no such prices file") from None
    except yaml.YAMLError as error:
        raise PriceError(f"{path}: not valid YAML or JSON: {error}") from None
    if not isinstance(loaded, dict):
        raise PriceError(f"{path}: the top level must be a mapping with `models:` (or `prices:`)")
    try:
        return PriceFile.model_validate(loaded)
    except ValidationError as error:
        raise PriceError(_describe(error, str(path))) from None


def packaged_table() -> PriceTable:
    # podium is a namespace package, so importlib.resources cannot address its data here.
    text = (Path(__file__).parent.parent / "data" / "prices.yaml").read_text(encoding="utf-8")
    table = PriceTable()
    apply_file(table, PriceFile.model_validate(yaml.safe_load(text)), "podium price table")
    return table


def _grade_from_prior(prior: float | None) -> str | None:
    if prior is None:
        return None
    return "high" if prior >= 0.85 else "medium" if prior >= 0.7 else "low"


def worker_price(worker: WorkerConfig, table: PriceTable) -> ModelPrice:
    """A configured worker as a price entry: its own price is what the company pays."""
    listed = table.lookup(worker.model)
    vendor = worker.profile.vendor
    if vendor == "unknown":
        vendor = listed.vendor if listed else worker.provider
    local = worker.profile.region == "on-premises" or worker.provider == "local"
    kind = listed.kind if listed else ("open-weight" if local else "proprietary")
    return ModelPrice(
        model=worker.name,
        vendor=vendor,
        input=worker.price.input,
        output=worker.price.output,
        cached_input=worker.price.cached_input,
        grade=_grade_from_prior(worker.quality_prior) or (listed.grade if listed else None),
        kind=kind,
        context=worker.context_window,
        tasks=listed.tasks if listed else (),
        aliases=tuple(alias for alias in worker.aliases if alias not in table.models),
        source=f"podium.yaml worker {worker.name}",
        worker=True,
        as_of=dt.date.today().isoformat(),
        tiers=tuple(_tier_rate(worker.price, tier.above) for tier in worker.price.tiers),
    )


def _tier_rate(price: Price, above: int) -> PriceTierRate:
    # Price.at fills the tier's unset rates from the base price, as the gateway bills them.
    rates = price.at(above + 1)
    return PriceTierRate(above, rates.input, rates.output, rates.cached_input)


def load_prices(
    files: Iterable[Path] = (),
    config: PodiumConfig | None = None,
    *,
    costs: CostsConfig | None = None,
) -> PriceTable:
    """The packaged table, then ``costs.prices_file``, ``costs.prices`` and the configured
    workers from podium.yaml, then each ``--prices`` file: later layers win."""
    table = packaged_table()
    costs = costs or (config.costs if config is not None else None)
    if costs is not None:
        if costs.prices_file:
            path = Path(costs.prices_file)
            apply_file(table, read_price_file(path), str(path))
        if costs.prices or costs.scenarios:
            overrides = PriceFile(models=costs.prices, scenarios=costs.scenarios)
            apply_file(table, overrides, "podium.yaml costs")
    if config is not None:
        for worker in config.workers:
            table.models[worker.name] = worker_price(worker, table)
        if config.workers:
            table.layers.append("podium.yaml workers")
    for path in files:
        apply_file(table, read_price_file(path), str(path))
    return table
