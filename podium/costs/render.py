"""A projection as an aligned terminal table, and as JSON."""

from __future__ import annotations

from typing import Any

from podium.costs.prices import ModelPrice, PriceTable
from podium.costs.project import Architecture, Projection
from podium.costs.workloads import Workload

KINDS = {"workloads": "workloads file", "usage": "usage export", "traces": "trace store"}


def short_tokens(count: int) -> str:
    """``200k`` for 200,000; exact counts that are not whole thousands stay exact."""
    return f"{count // 1000}k" if count % 1000 == 0 else f"{count:,}"


def _rate(value: float) -> str:
    return f"{value:g}"


def long_prompt_rates(price: ModelPrice) -> str:
    """``6 / 22.5 above 200k``: input / output USD per 1M tokens of each long-prompt tier."""
    return ", ".join(
        f"{_rate(tier.input)} / {_rate(tier.output)} above {short_tokens(tier.above)}"
        for tier in price.tiers
    )


def long_prompts(workload: Workload, table: PriceTable) -> str:
    """``10% >200k``: the share of a workload's requests past a long-prompt threshold of the
    table, where some are and some are not, so a mean under a threshold does not hide the
    requests priced above it (and one over it does not hide those below)."""
    parts: list[str] = []
    higher = 0.0  # the share past the next threshold up: a lower one with the same says nothing
    for threshold in reversed(table.thresholds()):
        share = workload.above(threshold)
        if 0 < share < 1 and share != higher:
            # Never "0%" or "100%" for a share that is neither: rounding would hide it.
            shown = "<1%" if share < 0.01 else ">99%" if share > 0.99 else f"{share:.0%}"
            parts.insert(0, f"{shown} >{short_tokens(threshold)}")
        higher = share
    return ", ".join(parts)


def tokens_in_out(workload: Workload, table: PriceTable, separator: str = "/") -> str:
    text = f"{workload.input_tokens:,.0f}{separator}{workload.output_tokens:,.0f}"
    long = long_prompts(workload, table)
    return f"{text} ({long})" if long else text


def usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    """Columns padded to their widest cell; ``right`` columns (numbers) aligned right."""
    right = right or set()
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [
            str(cell).rjust(width) if index in right else str(cell).ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _versus(arch: Architecture, reference: float) -> str:
    if reference <= 0:
        return ""
    return f"{arch.priced.annual_usd / reference - 1:+.0%}"


def _short(key: str) -> str:
    return {
        "as-run": "as run",
        "single-vendor": "single",
        "per-workload": "per-workload",
        "rules": "rules",
        "learned": "learned",
    }.get(key, key)


def projection_text(projection: Projection) -> str:
    workloads = projection.workloads
    prices = projection.table
    lines = [
        f"Workloads: {workloads.source} ({len(workloads.workloads)} workloads from a "
        f"{KINDS.get(workloads.kind, workloads.kind)}; annualised over "
        f"{workloads.days_per_year:g} days"
        + (f" from {workloads.period_days:.1f} observed days" if workloads.period_days else "")
        + ")",
        f"Prices: {', '.join(prices.layers)}; list prices as of {prices.as_of or 'unknown'}"
        + (
            f"; scenario {prices.applied.name}: {prices.applied.describe()}"
            if prices.applied
            else ""
        ),
        "",
    ]
    reference = next(
        (a.priced.annual_usd for a in projection.architectures if a.key == "single-vendor"), 0.0
    )
    rows = []
    for arch in projection.architectures:
        unpriced = " +unpriced" if arch.priced.unpriced else ""
        met, total = arch.meets_need
        rows.append(
            [
                arch.title + (" *" if arch.assumption else ""),
                usd(arch.priced.annual_usd) + unpriced,
                _versus(arch, reference),
                f"{met}/{total}",
                arch.quality_note,
            ]
        )
    lines.append(
        table(
            ["Architecture", "Annual cost", "vs single", "Need met", "Expected quality"],
            rows,
            right={1, 2, 3},
        )
    )
    if any(arch.assumption for arch in projection.architectures):
        lines.append(f"* {projection.learned.source}")
    lines += ["", "Per workload (annual cost; model chosen):"]
    keys = [arch.key for arch in projection.architectures]
    headers = ["Workload", "Req/day", "Tokens in/out", "Need", "Data"]
    headers += [_short(key) for key in keys if key != "learned"]
    workload_rows = []
    for workload in workloads.workloads:
        row = [
            workload.name,
            f"{workload.requests_per_day:,.0f}",
            tokens_in_out(workload, prices),
            workload.need,
            workload.data_class,
        ]
        for arch in projection.architectures:
            if arch.key == "learned":
                continue
            assignment = next(a for a in arch.plan if a.workload == workload.name)
            models = "+".join(call.model for call in assignment.calls) or "none fits"
            cost = arch.priced.by_workload.get(workload.name)
            row.append(f"{usd(cost)} {models}" if arch.key != "as-run" else usd(cost))
        workload_rows.append(row)
    lines.append(table(headers, workload_rows, right={1, 2}))
    if projection.sensitivity or projection.scenarios:
        lines += ["", "Sensitivity (annual cost with the same choices, prices changed):"]
        sens_rows = [
            [row.label, *(usd(row.annual_usd[key]) for key in keys)]
            for row in [*projection.scenarios, *projection.sensitivity]
        ]
        base_row = [
            "today's list prices",
            *(usd(a.priced.annual_usd) for a in projection.architectures),
        ]
        lines.append(
            table(
                ["Change", *(_short(key) for key in keys)],
                [base_row, *sens_rows],
                right=set(range(1, len(keys) + 1)),
            )
        )
    if workloads.rejected or projection.warnings:
        lines += ["", "Warnings:"]
        lines += [f"  - {warning}" for warning in projection.warnings]
    return "\n".join(lines)


def projection_json(projection: Projection) -> dict[str, Any]:
    workloads = projection.workloads
    prices = projection.table
    return {
        "workloads": {
            "source": workloads.source,
            "kind": workloads.kind,
            "days_per_year": workloads.days_per_year,
            "period_days": workloads.period_days,
            "rows": workloads.rows,
            "rejected_rows": [{"line": line, "reason": why} for line, why in workloads.rejected],
            "items": [
                {
                    "name": w.name,
                    "requests_per_day": w.requests_per_day,
                    "input_tokens": w.input_tokens,
                    "output_tokens": w.output_tokens,
                    "cached_tokens": w.cached_tokens,
                    "size_bands": [
                        {
                            "above": band.above,
                            "share": band.share,
                            "input_tokens": band.input_tokens,
                            "output_tokens": band.output_tokens,
                            "cached_tokens": band.cached_tokens,
                        }
                        for band in w.bands
                    ],
                    "quality_need": w.need,
                    "quality_source": w.quality_source,
                    "data_class": w.data_class,
                    "task": w.task,
                    "features": sorted(w.features),
                    "current_models": w.current_models(),
                }
                for w in workloads.workloads
            ],
        },
        "prices": {
            "as_of": prices.as_of,
            "layers": prices.layers,
            "scenario": None
            if prices.applied is None
            else {"name": prices.applied.name, "changes": dict(prices.applied.changes)},
        },
        "frontier": projection.frontier.model,
        "architectures": [
            {
                "key": arch.key,
                "title": arch.title,
                "basis": arch.basis,
                "annual_usd": round(arch.priced.annual_usd, 2),
                "observed_usd": arch.priced.observed_usd,
                "unpriced_requests": arch.priced.unpriced,
                "quality": arch.quality,
                "quality_note": arch.quality_note,
                "need_met": {"workloads": arch.meets_need[0], "of": arch.meets_need[1]},
                "assumption": arch.assumption,
                "by_workload": arch.priced.by_workload,
                "by_model": arch.priced.by_model,
                "plan": [
                    {
                        "workload": a.workload,
                        "models": {call.model: call.per_request for call in a.calls},
                        "rule": a.rule,
                        "note": a.note,
                    }
                    for a in arch.plan
                ],
            }
            for arch in projection.architectures
        ],
        "learned_point": {
            "cost_fraction": projection.learned.cost_fraction,
            "quality_ratio": projection.learned.quality_ratio,
            "source": projection.learned.source,
            "router": projection.learned.router,
            "assumption": projection.learned.assumption,
        },
        "sensitivity": [
            {"change": row.label, "annual_usd": row.annual_usd} for row in projection.sensitivity
        ],
        "scenarios": [
            {"scenario": row.label, "annual_usd": row.annual_usd} for row in projection.scenarios
        ],
        "warnings": projection.warnings,
    }
