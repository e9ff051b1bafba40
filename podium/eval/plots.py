"""The quality-cost plot of an offline report: every single model as a point, every router as
its frontier (with its raw operating points faint), the oracle as a star.

matplotlib is an optional extra (``pip install 'podium[plots]'``), imported only here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from podium.eval.metrics import Point, frontier


def plot_report(report: dict[str, Any], out: Path, title: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the install
        raise RuntimeError("plots need matplotlib: pip install 'podium[plots]'") from error

    figure, axes = plt.subplots(figsize=(9, 6), dpi=120)
    singles = report["single"]
    best = report["best_single"]["model"]
    for model, point in singles.items():
        is_best = model == best
        axes.scatter(
            point["cost"],
            point["quality"],
            s=40 if is_best else 18,
            color="black" if is_best else "grey",
            zorder=3,
        )
        label = model.split("/")[-1]
        axes.annotate(
            label,
            (point["cost"], point["quality"]),
            fontsize=6,
            xytext=(3, 2),
            textcoords="offset points",
            color="black" if is_best else "dimgrey",
        )
    oracle = report["oracle"]
    axes.scatter(
        oracle["cost"],
        oracle["quality"],
        marker="*",
        s=140,
        color="gold",
        edgecolor="black",
        zorder=4,
        label="oracle",
    )
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for index, (name, result) in enumerate(report["routers"].items()):
        colour = colours[index % len(colours)]
        points = [Point(p["quality"], p["cost"], p["param"]) for p in result["curve"]]
        hull = frontier(points)
        axes.scatter(
            [p.cost for p in points], [p.quality for p in points], s=6, color=colour, alpha=0.35
        )
        axes.plot(
            [c for c, _ in hull],
            [q for _, q in hull],
            color=colour,
            linewidth=1.8,
            label=f"{name} (AIQ {result['aiq']:.3f})",
        )
    best_cost = report["best_single"]["cost"]
    for fraction, style in ((0.25, ":"), (0.5, "--")):
        axes.axvline(fraction * best_cost, color="lightgrey", linestyle=style, zorder=1)
    axes.axhline(report["best_single"]["quality"], color="lightgrey", zorder=1)
    axes.set_xscale("log")
    axes.set_xlabel("mean cost per query (USD, log scale)")
    axes.set_ylabel("mean quality")
    axes.set_title(title or f"quality vs cost on {report['n']} test queries")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(alpha=0.2)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
