"""The annual cost of each architecture for a set of workloads.

Every architecture is a *plan*: for each workload, which models answer one request and how
many calls each makes. A plan is priced against a price table, so the same plan can be
re-priced under price changes (sensitivity) and scenarios without being re-chosen.

- as run: what the usage export or the traces show actually ran (when known).
- single-vendor frontier: one frontier model for everything.
- frontier per workload: the cheapest frontier-vendor model whose grade meets each need.
- rules router: the configured ``routing.rules``, or the default tiering rules below.
- learned router: the operating point of an offline evaluation (cost fraction at matched
  quality), or a stated assumption when there is none.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from podium.costs.prices import GRADES, ModelPrice, PriceError, PriceTable, Scenario
from podium.costs.workloads import SizeBand, Workload, WorkloadSet

SENSITIVITY = 0.30
ASSUMED_LEARNED_FRACTION = 0.40
ASSUMED_LEARNED_QUALITY = 0.95
LEARNED_QUALITY_FLOOR = 0.95  # of the best single model's quality, as in RouterBench targets
CONFIDENTIAL_CLASSES = frozenset({"confidential", "restricted", "secret"})


@dataclass(frozen=True, slots=True)
class Call:
    """``per_request`` calls to ``model`` for each request of the workload, of these sizes."""

    model: str
    per_request: float
    input_tokens: float
    output_tokens: float
    cached_tokens: float = 0.0
    batch_share: float = 0.0
    bands: tuple[SizeBand, ...] = ()  # the calls by size; empty, all at the sizes above

    def cost(self, price: ModelPrice) -> float:
        """USD for one such call at ``price``."""
        return sized_cost(
            price,
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.bands,
            batch_share=self.batch_share,
        )


def sized_cost(
    price: ModelPrice,
    input_tokens: float,
    output_tokens: float,
    cached_tokens: float = 0.0,
    bands: tuple[SizeBand, ...] = (),
    *,
    batch_share: float = 0.0,
) -> float:
    """USD for one request of these mean sizes, or of this mix of size bands: each band at
    the tier its own prompts reach, since a long prompt's tier applies to that request
    alone and a mean across a threshold would price every request on one side of it."""
    if not bands:
        return price.cost(input_tokens, output_tokens, cached_tokens, batch_share=batch_share)
    return sum(
        band.share
        * price.cost(
            band.input_tokens, band.output_tokens, band.cached_tokens, batch_share=batch_share
        )
        for band in bands
    )


@dataclass(slots=True)
class Assignment:
    workload: str
    calls: list[Call]
    rule: str = ""  # why this choice: the rule that fired, or how it was picked
    note: str = ""


@dataclass(slots=True)
class Priced:
    annual_usd: float
    observed_usd: float | None
    by_workload: dict[str, float]
    by_model: dict[str, float]
    unpriced: dict[str, float]  # model -> annual requests that could not be priced


@dataclass(slots=True)
class Architecture:
    key: str
    title: str
    basis: str
    plan: list[Assignment]
    priced: Priced
    meets_need: tuple[int, int]  # workloads whose need the chosen grade meets, of all
    quality: float | None = None
    quality_note: str = "unknown"
    assumption: bool = False


@dataclass(frozen=True, slots=True)
class LearnedPoint:
    cost_fraction: float  # of the best single model's cost
    quality_ratio: float  # of the best single model's quality
    source: str
    router: str = ""
    best_model: str = ""
    best_quality: float | None = None
    assumption: bool = False
    singles: dict[str, float] = field(default_factory=dict)  # model -> measured quality


@dataclass(slots=True)
class SensitivityRow:
    label: str
    annual_usd: dict[str, float]  # architecture key -> annual cost with the change


@dataclass(slots=True)
class Projection:
    workloads: WorkloadSet
    table: PriceTable
    frontier: ModelPrice
    architectures: list[Architecture]
    sensitivity: list[SensitivityRow]
    scenarios: list[SensitivityRow]
    learned: LearnedPoint
    warnings: list[str]

    def get(self, key: str) -> Architecture | None:
        return next((arch for arch in self.architectures if arch.key == key), None)


# -- pricing a plan -----------------------------------------------------------------------------


def price_plan(plan: list[Assignment], workloads: WorkloadSet, table: PriceTable) -> Priced:
    by_name = {workload.name: workload for workload in workloads.workloads}
    annual = 0.0
    observed: float | None = 0.0
    by_workload: dict[str, float] = defaultdict(float)
    by_model: dict[str, float] = defaultdict(float)
    unpriced: dict[str, float] = defaultdict(float)
    for assignment in plan:
        workload = by_name[assignment.workload]
        requests = workloads.annual_requests(workload)
        for call in assignment.calls:
            price = table.lookup(call.model)
            if price is None:
                unpriced[call.model] += requests * call.per_request
                continue
            one = call.per_request * call.cost(price)
            annual += one * requests
            by_workload[workload.name] += one * requests
            by_model[price.model] += one * requests
            if workload.observed_requests is None:
                observed = None
            elif observed is not None:
                observed += one * workload.observed_requests
    return Priced(annual, observed, dict(by_workload), dict(by_model), dict(unpriced))


def _single(workload: Workload, model: str) -> list[Call]:
    return [
        Call(
            model,
            1.0,
            workload.input_tokens,
            workload.output_tokens,
            workload.cached_tokens,
            workload.batch_share,
            workload.bands,
        )
    ]


def _meets(plan: list[Assignment], workloads: WorkloadSet, table: PriceTable) -> tuple[int, int]:
    by_name = {workload.name: workload for workload in workloads.workloads}
    met = 0
    for assignment in plan:
        need = GRADES[by_name[assignment.workload].need]
        ranks = [
            price.rank if (price := table.lookup(call.model)) else 0 for call in assignment.calls
        ]
        met += bool(ranks) and min(ranks) >= need
    return met, len(plan)


# -- choosing models ----------------------------------------------------------------------------


def _fits(price: ModelPrice, workload: Workload) -> bool:
    fits_context = price.context is None or price.context >= workload.max_input_tokens
    return price.rank >= GRADES[workload.need] and fits_context


def cheapest(candidates: Iterable[ModelPrice], workload: Workload) -> ModelPrice | None:
    fitting = [price for price in candidates if _fits(price, workload)]
    if not fitting:
        return None
    return min(
        fitting,
        key=lambda price: (
            sized_cost(
                price,
                workload.input_tokens,
                workload.output_tokens,
                workload.cached_tokens,
                workload.bands,
            ),
            price.model,
        ),
    )


def frontier_vendors(table: PriceTable) -> set[str]:
    """Vendors that sell a high-grade proprietary model of their own."""
    return {
        price.vendor
        for price in table.models.values()
        if price.grade == "high" and price.kind == "proprietary" and not price.worker
    }


def choose_frontier(table: PriceTable, workloads: WorkloadSet, explicit: str | None) -> ModelPrice:
    """``explicit``, else the flagship of the vendor the company spends most with today,
    else the table's first high-grade flagship."""
    if explicit:
        price = table.lookup(explicit)
        if price is None:
            raise PriceError(f"--frontier {explicit!r} is not in the price table")
        return price
    spend: dict[str, float] = defaultdict(float)
    for workload in workloads.workloads:
        for use in workload.current:
            price = table.lookup(use.model)
            if price is not None and use.calls:
                one = sized_cost(
                    price,
                    use.input_tokens / use.calls,
                    use.output_tokens / use.calls,
                    0.0,
                    use.bands,
                )
                spend[price.vendor] += one * (
                    use.calls / workload.basis * workload.requests_per_day
                )
    flagships = [p for p in table.models.values() if p.flagship and p.grade == "high"]
    for vendor in sorted(spend, key=lambda name: -spend[name]):
        for price in flagships:
            if price.vendor == vendor:
                return price
    if not flagships:
        raise PriceError("the price table has no high-grade flagship model; pass --frontier")
    return flagships[0]


# -- the architectures --------------------------------------------------------------------------


def as_run(workloads: WorkloadSet) -> list[Assignment] | None:
    if not all(workload.current for workload in workloads.workloads):
        return None
    plan = []
    for workload in workloads.workloads:
        calls = [
            Call(
                use.model,
                use.calls / workload.basis,
                use.input_tokens / use.calls,
                use.output_tokens / use.calls,
                use.cached_tokens / use.calls,
                use.batch_calls / use.calls,
                use.bands,
            )
            for use in workload.current
            if use.calls > 0
        ]
        plan.append(Assignment(workload.name, calls, rule="as run"))
    return plan


def single_vendor(workloads: WorkloadSet, frontier: ModelPrice) -> list[Assignment]:
    return [
        Assignment(workload.name, _single(workload, frontier.model), rule="one model")
        for workload in workloads.workloads
    ]


def per_workload(workloads: WorkloadSet, table: PriceTable) -> list[Assignment]:
    vendors = frontier_vendors(table)
    pool = [
        price
        for price in table.models.values()
        if price.vendor in vendors and price.kind == "proprietary" and not price.worker
    ]
    plan = []
    for workload in workloads.workloads:
        chosen = cheapest(pool, workload)
        if chosen is None:
            plan.append(Assignment(workload.name, [], note="no frontier-vendor model fits"))
            continue
        rule = f"cheapest {workload.need}-grade frontier model"
        plan.append(Assignment(workload.name, _single(workload, chosen.model), rule=rule))
    return plan


def default_rules(workloads: WorkloadSet, table: PriceTable) -> list[Assignment]:
    """The documented default rule set, first match wins:

    1. restricted data -> a configured on-premises worker that meets the need;
    2. anything but public data -> never a vendor that may train on API data;
    3. code -> the cheapest code model that meets the need;
    4. otherwise -> the cheapest model of any vendor (open-weight hosts included) whose grade
       meets the need: small models for easy work, frontier models for hard work.
    """
    plan = []
    graded = [price for price in table.models.values() if price.grade is not None]
    for workload in workloads.workloads:
        pool = graded
        rule = f"{workload.need} need -> cheapest {workload.need}-grade model"
        note = ""
        if workload.data_class != "public":
            pool = [p for p in pool if table.vendor(p.vendor).trains_on_data is not True]
        if workload.data_class == "restricted":
            local = [p for p in pool if p.worker and p.kind == "open-weight"]
            if cheapest(local, workload) is not None:
                pool, rule = local, "restricted data -> on-premises worker"
            else:
                note = "restricted data: needs an on-premises worker or a zero-retention contract"
        elif workload.data_class in CONFIDENTIAL_CLASSES:
            rule = f"confidential data -> no-training vendors, {workload.need} grade"
        if workload.task == "code":
            coders = [p for p in pool if "code" in p.tasks]
            if cheapest(coders, workload) is not None:
                pool, rule = coders, f"code -> cheapest {workload.need}-grade code model"
        chosen = cheapest(pool, workload)
        if chosen is None:
            plan.append(Assignment(workload.name, [], note="no model in the table fits"))
            continue
        plan.append(Assignment(workload.name, _single(workload, chosen.model), rule, note))
    return plan


def configured_rules(
    workloads: WorkloadSet, rules: list[dict[str, Any]], default: str | None
) -> tuple[list[Assignment], list[str]]:
    """Evaluate podium.yaml ``routing.rules`` (podium.routing.config.RuleConfig, as dicts) per
    workload, first match wins, else the default worker. A workload stands for its requests:
    its name is the contract, caller key or requested model it was grouped by, its average
    prompt size stands for ``min_tokens``/``max_tokens``, its sample prompts for keywords. A
    condition that cannot be judged offline (headers) makes the rule not match, with a warning."""
    warnings: list[str] = []
    plan = []
    for workload in workloads.workloads:
        target: str | None = default
        fired, note = "no rule matched: default worker", ""
        for index, rule in enumerate(rules):
            name = str(rule.get("name", f"rule {index + 1}"))
            verdict, unknown = _rule_matches(rule.get("match") or {}, workload)
            for key in unknown:
                message = f"rule {name!r}: {key!r} cannot be judged from workloads; not matched"
                if message not in warnings:
                    warnings.append(message)
            if verdict:
                target, note = _rule_target(rule)
                fired = f"rule {name}"
                break
        if target is None:
            plan.append(Assignment(workload.name, [], rule=fired, note=note or "no target"))
        else:
            plan.append(Assignment(workload.name, _single(workload, target), fired, note))
    return plan, warnings


def _rule_target(rule: dict[str, Any]) -> tuple[str | None, str]:
    if isinstance(rule.get("worker"), str):
        return str(rule["worker"]), ""
    workflow = rule.get("workflow")
    if isinstance(workflow, dict) and workflow.get("workers"):
        first = str(workflow["workers"][0])
        template = workflow.get("template", "workflow")
        return first, f"{template} workflow priced as its first worker only"
    return None, f"delegates to router {rule.get('router')!r}: not priced"


def _as_list(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(item) for item in value.values()]
    return [str(item) for item in value] if isinstance(value, list) else [str(value)]


def _rule_matches(match: dict[str, Any], workload: Workload) -> tuple[bool, list[str]]:
    tokens = workload.input_tokens
    text = " ".join([workload.name, *workload.sample_prompts]).lower()
    names = {workload.name, *workload.current_models()}
    checks: dict[str, Callable[[Any], bool]] = {
        "data_class": lambda v: workload.data_class in _as_list(v),
        "contract": lambda v: workload.name in _as_list(v),
        "caller": lambda v: all(item == workload.name for item in _as_list(v)),
        "model": lambda v: bool(names & set(_as_list(v))),
        "keywords": lambda v: any(word.lower() in text for word in _as_list(v)),
        "regex": lambda v: any(re.search(p, text, re.IGNORECASE) for p in _as_list(v)),
        "max_tokens": lambda v: tokens <= float(v),
        "min_tokens": lambda v: tokens >= float(v),
        "tools": lambda v: ("tools" in workload.features) == bool(v),
        "images": lambda v: ("vision" in workload.features) == bool(v),
        "text": lambda v: True,
    }
    given = {key: value for key, value in match.items() if value is not None}
    unknown = [key for key in given if key not in checks]
    if unknown:
        return False, unknown
    return all(checks[key](value) for key, value in given.items()), []


def learned(workloads: WorkloadSet, frontier: ModelPrice, point: LearnedPoint) -> list[Assignment]:
    """The offline operating point applied per workload: the router spends ``cost_fraction``
    of what the frontier model alone would (as frontier-priced calls, so sensitivity follows
    the frontier vendor)."""
    plan = []
    for workload in workloads.workloads:
        calls = [
            Call(
                frontier.model,
                point.cost_fraction,
                workload.input_tokens,
                workload.output_tokens,
                workload.cached_tokens,
                workload.batch_share,
                workload.bands,
            )
        ]
        plan.append(Assignment(workload.name, calls, rule=f"{point.cost_fraction:.0%} of frontier"))
    return plan


# -- the offline evaluation's report ------------------------------------------------------------


def read_offline_report(path: Path) -> LearnedPoint:
    """The operating point of the routers in a ``podium eval offline --json`` report: the
    cheapest (cost fraction of the best single model) that keeps at least 95% of its quality,
    counting the matched-quality cost and the reported fixed fractions; when none does, the
    best quality reported."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise PriceError(f"{path}: no such offline report") from None
    except orjson.JSONDecodeError as error:
        raise PriceError(f"{path}: not valid JSON: {error}") from None
    try:
        best = data["best_single"]
        best_cost, best_quality = float(best["cost"]), float(best["quality"])
        routers: dict[str, Any] = data["routers"]
        singles = {
            str(model): float(values["quality"])
            for model, values in (data.get("single") or {}).items()
        }
    except (KeyError, TypeError, ValueError) as error:
        raise PriceError(
            f"{path}: not an offline evaluation report (needs best_single.cost/quality and "
            f"routers): {error}"
        ) from None
    if best_cost <= 0 or best_quality <= 0:
        raise PriceError(f"{path}: best_single cost and quality must be positive")
    # Operating points (cost fraction, quality ratio, router): matched quality, and the
    # reported quality at fixed cost fractions.
    points: list[tuple[float, float, str]] = []
    for name, values in routers.items():
        if not isinstance(values, dict):
            continue
        if values.get("cost_to_match_best") is not None:
            points.append((float(values["cost_to_match_best"]) / best_cost, 1.0, name))
        for fraction, quality in (values.get("quality_at_cost_fraction") or {}).items():
            if quality is not None:
                points.append((float(fraction), float(quality) / best_quality, name))
    if not points:
        raise PriceError(f"{path}: no router reports a cost fraction or a matched-quality cost")
    good = [point for point in points if point[1] >= LEARNED_QUALITY_FLOOR]
    if good:  # the cheapest point that keeps 95% of the best model's quality
        fraction, ratio, name = min(good, key=lambda point: (point[0], -point[1]))
    else:  # none does: the best quality reported, at its lowest cost
        fraction, ratio, name = min(points, key=lambda point: (-point[1], point[0]))
    return LearnedPoint(
        fraction,
        ratio,
        source=str(path),
        router=name,
        best_model=str(best.get("model", "")),
        best_quality=best_quality,
        singles=singles,
    )


def assumed_learned_point() -> LearnedPoint:
    return LearnedPoint(
        ASSUMED_LEARNED_FRACTION,
        ASSUMED_LEARNED_QUALITY,
        source=(
            f"assumption (no offline report): a learned router spends "
            f"{ASSUMED_LEARNED_FRACTION:.0%} of the frontier model's cost at "
            f"{ASSUMED_LEARNED_QUALITY:.0%} of its quality; run `podium eval offline` on your "
            "data and pass --offline-report"
        ),
        assumption=True,
    )


# -- quality ------------------------------------------------------------------------------------


def _measured_quality(
    plan: list[Assignment], workloads: WorkloadSet, table: PriceTable, singles: dict[str, float]
) -> float | None:
    """Request-weighted measured quality of the models a plan uses, when the offline report
    measured every one of them; else None."""
    if not singles:
        return None
    measured = {}
    for model, quality in singles.items():
        price = table.lookup(model)
        measured[price.model if price else model] = quality
    by_name = {workload.name: workload for workload in workloads.workloads}
    total = weight = 0.0
    for assignment in plan:
        requests = workloads.annual_requests(by_name[assignment.workload])
        for call in assignment.calls:
            price = table.lookup(call.model)
            key = price.model if price else call.model
            if key not in measured:
                return None
            total += measured[key] * requests * call.per_request
            weight += requests * call.per_request
    return total / weight if weight else None


# -- the whole projection -----------------------------------------------------------------------


def project(
    workloads: WorkloadSet,
    table: PriceTable,
    *,
    frontier: str | None = None,
    rules: list[dict[str, Any]] | None = None,
    default_worker: str | None = None,
    learned_point: LearnedPoint | None = None,
    scenario: Scenario | None = None,
) -> Projection:
    warnings = list(workloads.warnings)
    if (stale := table.staleness_warning()) is not None:
        warnings.append(stale)
    base = table
    if scenario is not None:
        table = table.with_scenario(scenario)
    chosen = choose_frontier(table, workloads, frontier)
    point = learned_point or assumed_learned_point()
    plans: list[tuple[str, str, str, list[Assignment], bool]] = []
    run = as_run(workloads)
    if run is not None:
        shown = {"usage": "the usage export", "traces": "Podium's traces"}.get(
            workloads.kind, "the workloads file's current_model"
        )
        plans.append(("as-run", "Today, as run", f"the models {shown} says ran", run, False))
    plans.append(
        (
            "single-vendor",
            f"Single-vendor frontier ({chosen.model})",
            f"every request on {chosen.model} ({chosen.vendor})",
            single_vendor(workloads, chosen),
            False,
        )
    )
    plans.append(
        (
            "per-workload",
            "Frontier picked per workload",
            "cheapest model from a frontier vendor whose grade meets each workload's need",
            per_workload(workloads, table),
            False,
        )
    )
    if rules:
        rule_plan, rule_warnings = configured_rules(workloads, rules, default_worker)
        warnings.extend(rule_warnings)
        basis = f"the {len(rules)} rules in podium.yaml routing.rules"
    else:
        rule_plan, basis = default_rules(workloads, table), "Podium's default tiering rules"
    plans.append(("rules", "Rules router", basis, rule_plan, False))
    plans.append(
        (
            "learned",
            "Learned router",
            point.source if point.assumption else f"offline report {point.source}",
            learned(workloads, chosen, point),
            point.assumption,
        )
    )
    architectures = []
    for key, title, basis_text, plan, assumed in plans:
        priced = price_plan(plan, workloads, table)
        quality = _measured_quality(plan, workloads, table, point.singles)
        note = f"{quality:.3f} (measured offline)" if quality is not None else "unknown"
        if key == "learned":
            note = f"{point.quality_ratio:.0%} of the best single model's quality"
            note += " (assumed)" if point.assumption else f" (offline, {point.router})"
            frontier_quality = _measured_quality(
                single_vendor(workloads, chosen), workloads, table, point.singles
            )
            quality = None if frontier_quality is None else frontier_quality * point.quality_ratio
        meets = (len(plan), len(plan)) if key == "learned" else _meets(plan, workloads, table)
        architectures.append(
            Architecture(key, title, basis_text, plan, priced, meets, quality, note, assumed)
        )
        if priced.unpriced:
            models = ", ".join(
                f"{model} ({requests:,.0f} requests a year)"
                for model, requests in sorted(priced.unpriced.items())
            )
            warnings.append(
                f"{title}: not in the total, no price for: {models}; add them with --prices "
                "or podium.yaml costs.prices"
            )
    sensitivity = []
    vendors = sorted(
        {
            price.vendor
            for arch in architectures
            for model in arch.priced.by_model
            if (price := table.lookup(model)) is not None
        }
    )
    for vendor in vendors:
        for change in (SENSITIVITY, -SENSITIVITY):
            changed = table.scaled_vendor(vendor, 1 + change)
            costs = {
                a.key: price_plan(a.plan, workloads, changed).annual_usd for a in architectures
            }
            sensitivity.append(SensitivityRow(f"{vendor} {change:+.0%}", costs))
    scenario_rows = []
    for named in base.scenarios.values():
        changed = base.with_scenario(named)
        costs = {a.key: price_plan(a.plan, workloads, changed).annual_usd for a in architectures}
        scenario_rows.append(SensitivityRow(named.name, costs))
    return Projection(
        workloads, table, chosen, architectures, sensitivity, scenario_rows, point, warnings
    )
