"""The architecture memo: from a projection of real usage to something a CFO and an IT lead
can act on. Three numbers first, then where the money goes, the lock-in points, the rules and
worker pool to paste into podium.yaml, savings now and next quarter, and governance."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from podium.costs.document import (
    Block,
    Bullets,
    Code,
    Heading,
    Image,
    Para,
    Table,
    to_html,
    to_markdown,
)
from podium.costs.prices import ModelPrice, PriceTable
from podium.costs.project import CONFIDENTIAL_CLASSES, Architecture, Projection, cheapest
from podium.costs.render import tokens_in_out, usd
from podium.costs.workloads import Workload

SMALL_SPEND_USD = 25_000
DATED_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|\d{4})$")

FEATURE_NOTES: dict[str, str] = {
    "tools": (
        "function calling: each vendor has its own tool-call format; Podium translates "
        "between OpenAI, Anthropic and Gemini formats, but tool schemas need a test per model"
    ),
    "json": (
        "structured output (JSON mode / JSON schema): strictness differs by vendor; validate "
        "outputs (Podium contracts) before moving a workload"
    ),
    "vision": "image input: only some models accept images; keep a vision-capable fallback",
    "batch": (
        "the vendor's batch API (about half price, results within 24 h): a price advantage "
        "tied to one vendor's batch endpoint"
    ),
    "long-context": (
        "prompts over 100k tokens: only long-context models fit, and several vendors charge "
        "more above a threshold"
    ),
    "cached-input": (
        "prompt caching: cached-input discounts depend on the vendor's cache rules and on "
        "keeping prompts stable"
    ),
}


def recommended(projection: Projection) -> Architecture:
    """The cheapest architecture that meets every workload's need by grade; a learned router
    counts only when an offline evaluation measured it."""
    options = [
        arch
        for arch in projection.architectures
        if arch.key in ("per-workload", "rules", "learned")
        and not arch.assumption
        and arch.meets_need[0] == arch.meets_need[1]
        and not arch.priced.unpriced
    ]
    if not options:
        fallback = projection.get("rules") or projection.architectures[-1]
        return fallback
    return min(options, key=lambda arch: (arch.priced.annual_usd, arch.key != "rules"))


def baseline(projection: Projection) -> Architecture:
    found = projection.get("as-run") or projection.get("single-vendor")
    assert found is not None
    return found


def vendor_spend(projection: Projection, arch: Architecture) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for model, amount in arch.priced.by_model.items():
        price = projection.table.lookup(model)
        totals[price.vendor if price else "unknown"] += amount
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "n/a"


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "workload"


# -- the paste-able configuration ---------------------------------------------------------------


def _fallback(
    projection: Projection, workload: Workload, primary: ModelPrice | None
) -> ModelPrice | None:
    """A second source from another vendor that also meets the need: the frontier-vendor
    pick for the workload when that is another vendor, else the cheapest other vendor's."""
    table = projection.table
    per_workload = projection.get("per-workload")
    if per_workload is not None:
        for assignment in per_workload.plan:
            if assignment.workload == workload.name and assignment.calls:
                pick = table.lookup(assignment.calls[0].model)
                if pick is not None and (primary is None or pick.vendor != primary.vendor):
                    return pick
    pool = [
        price
        for price in table.models.values()
        if price.grade is not None
        and not price.worker
        and (primary is None or price.vendor != primary.vendor)
        and (
            workload.data_class == "public" or table.vendor(price.vendor).trains_on_data is not True
        )
    ]
    return cheapest(pool, workload)


def proposed_rules(projection: Projection) -> tuple[list[dict[str, Any]], list[ModelPrice]]:
    """Podium ``routing.rules`` that send each workload where the rules architecture put it,
    with a second-vendor fallback, and the models they use."""
    rules_arch = projection.get("rules")
    assert rules_arch is not None
    by_name = {workload.name: workload for workload in projection.workloads.workloads}
    rules: list[dict[str, Any]] = []
    used: dict[str, ModelPrice] = {}
    ordered = sorted(rules_arch.plan, key=lambda a: by_name[a.workload].data_class != "restricted")
    for assignment in ordered:
        if not assignment.calls:
            continue
        workload = by_name[assignment.workload]
        primary = projection.table.lookup(assignment.calls[0].model)
        if primary is None:
            continue
        used.setdefault(primary.model, primary)
        rule: dict[str, Any] = {
            "name": _slug(workload.name),
            "match": {"caller": {"app": workload.name}},
            "worker": primary.model,
        }
        second = _fallback(projection, workload, primary)
        if second is not None:
            used.setdefault(second.model, second)
            rule["fallbacks"] = [second.model]
        rule["reason"] = f"{workload.name}: {assignment.rule}"
        rules.append(rule)
    return rules, list(used.values())


def _cleared(price: ModelPrice, table: PriceTable) -> list[str]:
    if table.vendor(price.vendor).trains_on_data:
        return ["public"]
    return ["public", "internal", "confidential"]


def proposed_workers(models: list[ModelPrice], table: PriceTable) -> list[dict[str, Any]]:
    workers = []
    for price in models:
        vendor = table.vendor(price.vendor)
        entry: dict[str, Any] = {
            "name": price.model,
            "provider": vendor.provider or "openai-compatible",
            "model": price.api_model or price.model,
        }
        if vendor.base_url:
            entry["base_url"] = vendor.base_url
        if vendor.api_key_env:
            entry["api_key_env"] = vendor.api_key_env
        priced: dict[str, Any] = {"input": price.input, "output": price.output}
        if price.cached_input is not None:
            priced["cached_input"] = price.cached_input
        if price.tiers:  # long prompts are billed at these; a worker without them under-counts
            priced["tiers"] = [
                {
                    "above": tier.above,
                    "input": tier.input,
                    "output": tier.output,
                    **({} if tier.cached_input is None else {"cached_input": tier.cached_input}),
                }
                for tier in price.tiers
            ]
        entry["price"] = priced
        if price.context:
            entry["context_window"] = price.context
        entry["capabilities"] = ["streaming", "tools", "json"]
        entry["profile"] = {
            "vendor": price.vendor,
            "region": (vendor.hosting or "unknown").split(";")[0],
            "trains_on_data": bool(vendor.trains_on_data),
            "cleared": _cleared(price, table),
        }
        workers.append(entry)
    return workers


def config_snippet(projection: Projection) -> str:
    rules, models = proposed_rules(projection)
    workers = proposed_workers(models, projection.table)
    text = yaml.safe_dump(
        {"workers": workers, "routing": {"rules": rules}},
        sort_keys=False,
        width=100,
        allow_unicode=True,
    )
    header = (
        "# Proposed by `podium diagnose`: paste into podium.yaml, then give each application\n"
        "# its own virtual key with metadata app: <workload> (rules match on it).\n"
        "# Prices are list prices; replace them with what your contracts say.\n"
    )
    return header + text


# -- the memo -----------------------------------------------------------------------------------


def _executive(now: Projection, later: Projection | None, scenario: str, title: str) -> list[Block]:
    base = baseline(now)
    best = recommended(now)
    saving = base.priced.annual_usd - best.priced.annual_usd
    vendors = vendor_spend(now, base)
    top_vendor, top_share = next(iter(vendors.items()), ("none", 0.0))
    share = top_share / base.priced.annual_usd if base.priced.annual_usd else 0.0
    later_best = later.get(best.key) if later else None
    today_label = (
        "Annual AI spend today" if base.key == "as-run" else "Annual cost, one frontier model"
    )
    unpriced = sum(base.priced.unpriced.values())
    spend_note = (
        f" plus {unpriced:,.0f} requests a year on models with no list price" if unpriced else ""
    )
    numbers = [
        [f"**{today_label}**", f"**{usd(base.priced.annual_usd)}**", f"{base.basis}{spend_note}"],
        [
            f"**With {best.title.lower()}**",
            f"**{usd(best.priced.annual_usd)}**",
            f"saves {usd(saving)} a year ({_pct(saving, base.priced.annual_usd)}); every "
            f"workload on a model graded for its need"
            + (
                f"; {usd(later_best.priced.annual_usd)} under the {scenario} assumption"
                if later_best
                else ""
            ),
        ],
        [
            "**Spend with one vendor**",
            f"**{share:.0%}**",
            f"{top_vendor}: {usd(top_share)} a year",
        ],
    ]
    blocks: list[Block] = [
        Heading(f"AI architecture memo: {title}", 1),
        Para(_provenance(now)),
        Heading("Executive summary"),
        Table(["", "Number", "What it means"], numbers, right={1}),
    ]
    actions = [
        f"**Route by workload.** Put Podium in front of the applications and paste the rules "
        f"below: {usd(best.priced.annual_usd)} a year instead of {usd(base.priced.annual_usd)}. "
        "Move one workload at a time, lowest risk first, and compare answers in shadow mode "
        "before switching (the grades are priors, not measurements of your tasks).",
    ]
    if share >= 0.8:
        actions.append(
            f"**Reduce the single-vendor dependency.** {share:.0%} of today's spend goes to "
            f"{top_vendor}. Each proposed rule names a fallback from a second vendor, so an "
            f"outage or a price rise at {top_vendor} becomes a configuration change."
        )
    sensitive = [w for w in now.workloads.workloads if w.data_class in CONFIDENTIAL_CLASSES]
    if sensitive:
        actions.append(
            f"**Settle data handling before moving confidential work.** {len(sensitive)} "
            "workload(s) carry confidential or restricted data: sign each vendor's data "
            "processing terms, ask for zero retention, and clear workers per data class in "
            "podium.yaml so no routing rule can send that data elsewhere."
        )
    learned = now.get("learned")
    if learned is not None and learned.assumption:
        actions.append(
            "**Measure before trusting a learned router.** Its figure here is an assumption; "
            "`podium eval offline` on your own labelled questions gives the real cost and "
            "quality, and this memo picks it up with `--offline-report`."
        )
    if base.priced.annual_usd < SMALL_SPEND_USD:
        blocks.append(
            Para(
                f"At {usd(base.priced.annual_usd)} a year the AI bill is small next to staff "
                "costs, so the stronger reasons to act are the lock-in and data-handling points "
                "below; the savings scale with volume (ten times the usage, ten times every "
                "figure here)."
            )
        )
    blocks += [Heading("What to do", 3), Bullets(actions, ordered=True)]
    return blocks


def _provenance(projection: Projection) -> str:
    workloads = projection.workloads
    table = projection.table
    period = (
        f" over {workloads.period_days:.1f} days, annualised to {workloads.days_per_year:g} days"
        if workloads.period_days
        else f", {workloads.days_per_year:g} working days a year"
    )
    age = table.age_days()
    stale = (
        f" The table is {age} days old: check the vendors' pages before deciding."
        if age is not None and age > 90
        else ""
    )
    rows = f" ({workloads.rows:,} rows)" if workloads.rows else ""
    return (
        f"_Prepared by `podium diagnose` on {dt.date.today().isoformat()} from "
        f"`{Path(workloads.source).name}`{rows}{period}. Prices: list prices as of "
        f"{table.as_of} from the vendors' pricing pages ({', '.join(table.layers)}).{stale}_"
    )


def _spend(now: Projection) -> list[Block]:
    base = baseline(now)
    total = base.priced.annual_usd
    by_name = {w.name: w for w in now.workloads.workloads}
    rows = []
    for name, amount in sorted(base.priced.by_workload.items(), key=lambda item: -item[1]):
        workload = by_name[name]
        rows.append(
            [
                name,
                f"{workload.requests_per_day:,.0f}",
                tokens_in_out(workload, now.table, " / "),
                ", ".join(workload.current_models()) or "(none given)",
                usd(amount),
                _pct(amount, total),
            ]
        )
    for name in sorted(set(by_name) - set(base.priced.by_workload)):
        workload = by_name[name]
        rows.append(
            [
                name,
                f"{workload.requests_per_day:,.0f}",
                tokens_in_out(workload, now.table, " / "),
                ", ".join(workload.current_models()),
                "not priced",
                "",
            ]
        )
    blocks: list[Block] = [
        Heading("Where the spend goes"),
        Para(f"{base.title}: {usd(total)} a year. By workload:"),
        Table(
            ["Workload", "Requests/day", "Tokens in / out", "Model(s)", "Annual", "Share"],
            rows,
            right={1, 2, 4, 5},
        ),
    ]
    model_rows = [
        [model, usd(amount), _pct(amount, total)]
        for model, amount in sorted(base.priced.by_model.items(), key=lambda item: -item[1])
    ]
    model_rows += [
        [model, "not priced", f"{requests:,.0f} requests/yr"]
        for model, requests in base.priced.unpriced.items()
    ]
    vendor_rows = [
        [vendor, usd(amount), _pct(amount, total)]
        for vendor, amount in vendor_spend(now, base).items()
    ]
    blocks += [
        Para("By model and by vendor:"),
        Table(["Model", "Annual", "Share"], model_rows, right={1, 2}),
        Table(["Vendor", "Annual", "Share"], vendor_rows, right={1, 2}),
    ]
    return blocks


def _architectures(now: Projection, later: Projection | None, scenario: str) -> list[Block]:
    base = baseline(now)
    later_by_key = {a.key: a for a in later.architectures} if later else {}
    rows = []
    for arch in now.architectures:
        next_quarter = later_by_key.get(arch.key)
        rows.append(
            [
                arch.title + (" (assumed)" if arch.assumption else ""),
                usd(arch.priced.annual_usd) + (" + unpriced" if arch.priced.unpriced else ""),
                usd(next_quarter.priced.annual_usd) if next_quarter else "",
                _pct(base.priced.annual_usd - arch.priced.annual_usd, base.priced.annual_usd)
                if arch is not base
                else "",
                f"{arch.meets_need[0]} of {arch.meets_need[1]}",
                arch.quality_note,
            ]
        )
    blocks: list[Block] = [
        Heading("Four architectures, the same workloads"),
        Table(
            [
                "Architecture",
                "Annual, today",
                f"Annual, {scenario}",
                "Saving vs baseline",
                "Need met (by grade)",
                "Expected quality",
            ],
            rows,
            right={1, 2, 3},
        ),
        Bullets([f"**{arch.title}**: {arch.basis}." for arch in now.architectures]),
    ]
    if later is not None and later.table.applied is not None:
        applied = later.table.applied
        blocks.append(
            Para(
                f"_{scenario}_: {applied.describe()}. {applied.description.strip()} Models are "
                "re-chosen at those prices."
            )
        )
    blocks.append(
        Para(
            "Need met counts workloads whose model is graded at or above the workload's quality "
            "need (high, medium, low): a prior from the price table, not a test of your tasks. "
            "Expected quality is measured only when an offline evaluation covers the models."
        )
    )
    return blocks


def _lock_in(now: Projection) -> list[Block]:
    base = baseline(now)
    items = []
    vendors = vendor_spend(now, base)
    if vendors:
        top, amount = next(iter(vendors.items()))
        items.append(
            f"**Vendor concentration**: {_pct(amount, base.priced.annual_usd)} of spend with "
            f"{top} ({len(vendors)} vendor(s) in use)."
        )
    for workload in now.workloads.workloads:
        models = workload.current_models()
        if len(models) != 1:
            continue
        model = models[0]
        reasons = []
        if model.startswith("ft:") or ":ft-" in model:
            reasons.append("a fine-tuned model: it cannot move without retraining elsewhere")
        elif DATED_SNAPSHOT.search(model):
            reasons.append("a dated snapshot: it will be retired on the vendor's schedule")
        if now.table.lookup(model) is None:
            reasons.append("not in the price table, so its cost is not counted")
        tail = f" ({'; '.join(reasons)})" if reasons else ""
        items.append(f"**{workload.name}** runs only on `{model}`{tail}.")
    features: dict[str, list[str]] = defaultdict(list)
    for workload in now.workloads.workloads:
        for feature in sorted(workload.features):
            features[feature].append(workload.name)
        if workload.cached_tokens > 0:
            features["cached-input"].append(workload.name)
    for feature, names in sorted(features.items()):
        note = FEATURE_NOTES.get(feature, feature)
        items.append(f"**{feature}** in {', '.join(names)}: {note}.")
    if not items:
        items.append("No single-model workloads or vendor-specific features were detected.")
    return [Heading("Lock-in points"), Bullets(items)]


def _rules(now: Projection) -> list[Block]:
    rules_arch = now.get("rules")
    assert rules_arch is not None
    by_name = {w.name: w for w in now.workloads.workloads}
    rows = []
    for assignment in rules_arch.plan:
        workload = by_name[assignment.workload]
        model = assignment.calls[0].model if assignment.calls else "none fits"
        rows.append(
            [
                workload.name,
                f"{workload.need} ({workload.quality_source})",
                f"{workload.data_class} ({workload.data_class_source})"
                if workload.data_class_source != "stated"
                else workload.data_class,
                workload.task,
                model,
                usd(rules_arch.priced.by_workload.get(workload.name)),
                assignment.note,
            ]
        )
    return [
        Heading("Proposed routing rules and worker pool"),
        Para(
            "Per workload, the rule that sends it to the cheapest model graded for its need, "
            "within its data class (vendors that may train on API data only see public data):"
        ),
        Table(
            ["Workload", "Need", "Data class", "Task", "Model", "Annual", "Note"],
            rows,
            right={5},
        ),
        Para("Paste into podium.yaml (workers, then routing rules):"),
        Code(config_snippet(now), "yaml"),
    ]


def _governance(now: Projection) -> list[Block]:
    table = now.table
    base = baseline(now)
    rules_arch = now.get("rules")
    by_class: dict[str, list[Workload]] = defaultdict(list)
    for workload in now.workloads.workloads:
        by_class[workload.data_class].append(workload)
    rows = []
    for data_class, workloads in sorted(by_class.items()):
        today = sorted({m for w in workloads for m in w.current_models()})
        proposed = sorted(
            {
                call.model
                for arch in [rules_arch]
                if arch is not None
                for a in arch.plan
                if a.workload in {w.name for w in workloads}
                for call in a.calls
            }
        )
        rows.append(
            [
                data_class,
                ", ".join(w.name for w in workloads),
                ", ".join(today) or "-",
                ", ".join(proposed) or "-",
            ]
        )
    vendors = set(vendor_spend(now, base))
    if rules_arch is not None:
        vendors |= set(vendor_spend(now, rules_arch))
    _, models = proposed_rules(now) if rules_arch is not None else ([], [])
    vendors |= {price.vendor for price in models}
    vendor_rows = []
    for name in sorted(vendors):
        info = table.vendor(name)
        vendor_rows.append([name, info.hosting, info.retention, info.training])
    items = [
        "Sign a data processing agreement with every vendor in the pool; for confidential "
        "classes ask for zero data retention and the region you need.",
        "In podium.yaml, list on each worker the data classes it is cleared for "
        "(`profile.cleared`); Podium filters workers by clearance before any router runs and "
        "again on every fallback.",
        "Keep restricted data on workers you control (an open-weight model on your own "
        "hardware, `profile.region: on-premises`) or under a contract that names it.",
        "Turn on Podium's audit log and keep its traces (worker, tokens, cost, data class per "
        "request) for the retention your auditors ask for; re-run this memo every quarter.",
        f"Re-check the price table (as of {table.as_of}) and put negotiated prices in "
        "podium.yaml `costs.prices`.",
    ]
    restricted = [w.name for w in by_class.get("restricted", [])]
    if restricted and rules_arch is not None:
        notes = [a.note for a in rules_arch.plan if a.workload in restricted and a.note]
        if notes:
            items.insert(
                0,
                f"**{', '.join(restricted)}** carry restricted data and no on-premises worker "
                "is configured: add one before routing them, or keep them under a named "
                "zero-retention contract.",
            )
    return [
        Heading("Governance"),
        Para("Data classes, and which models see them today and under the proposed rules:"),
        Table(["Data class", "Workloads", "Models today", "Models proposed"], rows),
        Para(
            "What each vendor publishes about data handling (as we read their public terms on "
            "the table's date; verify against your contract):"
        ),
        Table(["Vendor", "Hosting", "Retention", "Training on your data"], vendor_rows),
        Heading("Checklist", 3),
        Bullets(items),
    ]


def _data_notes(now: Projection) -> list[Block]:
    workloads = now.workloads
    items = []
    if workloads.rejected:
        items.append(
            f"{len(workloads.rejected)} of {workloads.rows:,} rows were rejected and are not "
            "in any figure (see the warnings below)."
        )
    inferred = [w.name for w in workloads.workloads if w.quality_source != "stated"]
    if inferred:
        items.append(
            "Quality needs were inferred from each workload's name, prompts and current model "
            f"for: {', '.join(inferred)}. State them in a workloads file to override."
        )
    learned = now.learned
    items.append(f"Learned router: {learned.source}.")
    items += now.warnings
    return [Heading("Data and assumptions"), Bullets(items)]


def build_memo(
    now: Projection,
    later: Projection | None,
    *,
    title: str,
    scenario: str,
    charts: list[Any] | None = None,
) -> list[Block]:
    images = {Path(chart.path).stem.rsplit("-", 1)[-1]: chart for chart in charts or []}
    blocks = _executive(now, later, scenario, title)
    if "architectures" in images:
        blocks.append(Image(images["architectures"].path, images["architectures"].alt))
    blocks += _spend(now)
    for key in ("workload", "vendor"):
        if key in images:
            blocks.append(Image(images[key].path, images[key].alt))
    blocks += _architectures(now, later, scenario)
    blocks += _lock_in(now)
    blocks += _rules(now)
    blocks += _governance(now)
    blocks += _data_notes(now)
    return blocks


def write_memo(
    now: Projection,
    later: Projection | None,
    out: Path,
    *,
    html: bool = False,
    charts: bool = True,
    title: str | None = None,
    scenario: str = "next-quarter",
) -> list[Path]:
    """Write ``out`` (Markdown), its charts next to it, and ``out`` as .html when asked."""
    from podium.costs.charts import render_charts

    out.parent.mkdir(parents=True, exist_ok=True)
    name = title or now.workloads.organisation or Path(now.workloads.source).stem
    drawn = render_charts(now, later, out.parent, out.stem, scenario) if charts else []
    blocks = build_memo(now, later, title=name, scenario=scenario, charts=drawn)
    out.write_text(to_markdown(blocks, out.parent), encoding="utf-8")
    written = [out, *(chart.path for chart in drawn)]
    if html:
        page = out.with_suffix(".html")
        page.write_text(to_html(blocks, f"AI architecture memo: {name}"), encoding="utf-8")
        written.append(page)
    return written
