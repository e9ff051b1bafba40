"""The memo's charts (PNG) with matplotlib, an optional extra: ``pip install 'podium[plots]'``.

matplotlib is imported inside :func:`render_charts` only, so the gateway never loads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium.costs.project import Projection

COLOURS = {
    "as-run": "#6e7781",
    "single-vendor": "#cf222e",
    "per-workload": "#bf8700",
    "rules": "#1a7f37",
    "learned": "#0969da",
}
VENDOR_COLOURS = [
    "#0969da",
    "#cf222e",
    "#1a7f37",
    "#bf8700",
    "#8250df",
    "#1b7c83",
    "#bc4c00",
    "#6e7781",
    "#953800",
    "#116329",
]


class ChartsUnavailable(Exception):
    """matplotlib is not installed."""


@dataclass(slots=True)
class Chart:
    path: Path
    alt: str


def _money(value: float) -> str:
    if value >= 10_000:
        return f"${value / 1000:,.0f}k"
    if value >= 1_000:
        return f"${value / 1000:,.1f}k"
    return f"${value:,.0f}"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ChartsUnavailable(
            "charts need matplotlib: pip install 'podium[plots]' (or pass --no-charts)"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 11,
            "axes.titlesize": 13,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "svg.hashsalt": "podium",  # the same chart, byte for byte, on every run
        }
    )
    return plt


def render_charts(
    now: Projection, later: Projection | None, directory: Path, stem: str, scenario: str
) -> list[Chart]:
    plt = _pyplot()
    directory.mkdir(parents=True, exist_ok=True)
    charts = [
        _architectures(plt, now, later, directory / f"{stem}-architectures.png", scenario),
        _by_workload(plt, now, directory / f"{stem}-spend-by-workload.png"),
        _by_vendor(plt, now, directory / f"{stem}-spend-by-vendor.png"),
    ]
    return [chart for chart in charts if chart is not None]


def _save(plt: Any, figure: Any, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=130, metadata={"Software": None})
    plt.close(figure)


def _architectures(
    plt: Any, now: Projection, later: Projection | None, path: Path, scenario: str
) -> Chart:
    archs = now.architectures
    labels = [
        arch.title.replace(" (", "\n(") + ("\n(assumed)" if arch.assumption else "")
        for arch in archs
    ]
    today = [arch.priced.annual_usd for arch in archs]
    figure, axis = plt.subplots(figsize=(9, 0.75 * len(archs) + 1.6))
    positions = list(range(len(archs)))[::-1]
    height = 0.38 if later else 0.6
    bars = axis.barh(
        [p + (height / 2 if later else 0) for p in positions],
        today,
        height=height,
        color=[COLOURS.get(arch.key, "#6e7781") for arch in archs],
        label="today's list prices",
    )
    for bar, value in zip(bars, today, strict=True):
        axis.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {_money(value)}",
            va="center",
            fontsize=10,
        )
    if later is not None:
        by_key = {arch.key: arch.priced.annual_usd for arch in later.architectures}
        values = [by_key.get(arch.key, 0.0) for arch in archs]
        later_bars = axis.barh(
            [p - height / 2 for p in positions],
            values,
            height=height,
            color="#d0d7de",
            edgecolor=[COLOURS.get(arch.key, "#6e7781") for arch in archs],
            label=f"{scenario} (assumed prices)",
        )
        for bar, value in zip(later_bars, values, strict=True):
            axis.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {_money(value)}",
                va="center",
                fontsize=9,
                color="#57606a",
            )
        axis.legend(loc="lower right", frameon=False)
    axis.set_yticks(positions, labels)
    axis.set_xlabel("USD per year")
    axis.set_xlim(0, max([*today, 1.0]) * 1.22)
    axis.xaxis.set_major_formatter(lambda value, _: _money(value))
    ways = {4: "four", 5: "five"}.get(len(archs), str(len(archs)))
    axis.set_title(f"The same workloads, {ways} ways: annual cost")
    _save(plt, figure, path)
    return Chart(path, "Annual cost of each architecture, today and next quarter")


def _baseline(projection: Projection) -> Any:
    return projection.get("as-run") or projection.get("single-vendor")


def _by_workload(plt: Any, projection: Projection, path: Path) -> Chart:
    base = _baseline(projection)
    rules = projection.get("rules")
    names = sorted(base.priced.by_workload, key=lambda name: base.priced.by_workload[name])
    unpriced = [
        w.name for w in projection.workloads.workloads if w.name not in base.priced.by_workload
    ]
    names = unpriced + names
    figure, axis = plt.subplots(figsize=(9, 0.5 * len(names) + 1.6))
    positions = list(range(len(names)))
    values = [base.priced.by_workload.get(name, 0.0) for name in names]
    axis.barh(positions, values, height=0.6, color=COLOURS.get(base.key), label=base.title)
    if rules is not None:
        proposed = [rules.priced.by_workload.get(name, 0.0) for name in names]
        axis.barh(positions, proposed, height=0.25, color=COLOURS["rules"], label="rules router")
    for position, value, name in zip(positions, values, names, strict=True):
        label = " not priced (unknown model)" if name in unpriced else f" {_money(value)}"
        axis.text(value, position, label, va="center", fontsize=10)
    axis.set_yticks(positions, names)
    axis.set_xlabel("USD per year")
    axis.set_xlim(0, max([*values, 1.0]) * 1.3)
    axis.xaxis.set_major_formatter(lambda value, _: _money(value))
    axis.legend(loc="lower right", frameon=False)
    axis.set_title("Where the spend goes: annual cost per workload")
    _save(plt, figure, path)
    return Chart(path, "Annual cost per workload, today and behind the rules router")


def vendor_totals(projection: Projection, key: str) -> dict[str, float]:
    arch = projection.get(key)
    totals: dict[str, float] = {}
    if arch is None:
        return totals
    for model, usd in arch.priced.by_model.items():
        price = projection.table.lookup(model)
        vendor = price.vendor if price else "unknown"
        totals[vendor] = totals.get(vendor, 0.0) + usd
    return totals


def _by_vendor(plt: Any, projection: Projection, path: Path) -> Chart | None:
    base = _baseline(projection)
    rows = [(base.title, vendor_totals(projection, base.key))]
    if projection.get("rules") is not None:
        rows.append(("Rules router", vendor_totals(projection, "rules")))
    vendors = sorted({vendor for _, totals in rows for vendor in totals})
    if not vendors:
        return None
    figure, axis = plt.subplots(figsize=(9, 1.1 * len(rows) + 1.5))
    for index, (_, totals) in enumerate(rows):
        total = sum(totals.values()) or 1.0
        left = 0.0
        for number, vendor in enumerate(vendors):
            share = totals.get(vendor, 0.0) / total
            colour = VENDOR_COLOURS[number % len(VENDOR_COLOURS)]
            axis.barh(
                index,
                share,
                left=left,
                height=0.55,
                color=colour,
                label=vendor if index == 0 else None,
            )
            if share >= 0.06:
                axis.text(
                    left + share / 2,
                    index,
                    f"{vendor}\n{share:.0%}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white",
                )
            left += share
    axis.set_yticks(range(len(rows)), [label for label, _ in rows])
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axis.set_xlabel("share of annual spend")
    axis.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False, ncol=min(len(vendors), 6)
    )
    axis.set_title("Vendor concentration: share of spend by vendor")
    _save(plt, figure, path)
    return Chart(path, "Share of spend by vendor, today and behind the rules router")
