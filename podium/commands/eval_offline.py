"""``podium eval offline``: train every router on RouterBench-format train files and report
quality-cost curves on the test files (JSON and a plot)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def eval_group(main: click.Group) -> click.Group:
    """The ``eval`` group, shared with other evaluation commands: created once."""
    existing = main.commands.get("eval")
    if isinstance(existing, click.Group):
        return existing

    @main.group(name="eval")
    def group() -> None:
        """Evaluate routers and workers."""

    return group


def _embedder(enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from podium.routing.embeddings import load_embedder

        return load_embedder()
    except Exception as error:  # the model files may be missing from a trimmed install
        click.echo(f"embeddings unavailable ({error}); using prompt features only", err=True)
        return None


def _headline(report: dict[str, Any]) -> list[str]:
    best = report["best_single"]
    lines = [
        f"{report['n']} test queries; best single model {best['model']}: "
        f"quality {best['quality']:.3f} at ${best['cost']:.6f}/query; "
        f"oracle {report['oracle']['quality']:.3f} at ${report['oracle']['cost']:.6f}",
        f"{'router':<20} {'AIQ':>7} {'q@10%':>7} {'q@25%':>7} {'q@50%':>7}  cost to match best",
    ]
    for name, result in report["routers"].items():
        at = result["quality_at_cost_fraction"]
        match = result["cost_to_match_best"]
        match_text = "never" if match is None else f"${match:.6f} ({match / best['cost']:.0%})"
        lines.append(
            f"{name:<20} {result['aiq']:>7.4f} {at['0.1']:>7.3f} {at['0.25']:>7.3f} "
            f"{at['0.5']:>7.3f}  {match_text}"
        )
    return lines


def register(main: click.Group) -> None:
    group = eval_group(main)

    @group.command("offline")
    @click.option(
        "--train",
        "train_files",
        multiple=True,
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help="RouterBench-format CSV.",
    )
    @click.option(
        "--test",
        "test_files",
        multiple=True,
        required=True,
        type=click.Path(exists=True, dir_okay=False),
        help="RouterBench-format CSV.",
    )
    @click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report.")
    @click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Write a PNG plot.")
    @click.option(
        "--router",
        "router_names",
        multiple=True,
        help="Evaluate only these routers (default: all).",
    )
    @click.option(
        "--embeddings/--no-embeddings",
        default=False,
        show_default=True,
        help="Add the shipped sentence embeddings to the prompt features.",
    )
    @click.option(
        "--exclude-train-category",
        multiple=True,
        help="Drop this eval_name from the training rows (unseen-category check).",
    )
    @click.option(
        "--test-category", multiple=True, help="Keep only this eval_name in the test rows."
    )
    @click.option(
        "--by-category",
        "category_out",
        type=click.Path(dir_okay=False),
        help="Also write per-eval_name results of the first router to this file.",
    )
    def offline(
        train_files: tuple[str, ...],
        test_files: tuple[str, ...],
        json_out: str | None,
        plot_out: str | None,
        router_names: tuple[str, ...],
        embeddings: bool,
        exclude_train_category: tuple[str, ...],
        test_category: tuple[str, ...],
        category_out: str | None,
    ) -> None:
        """Train every router on --train and report quality-cost curves on --test."""
        import numpy as np

        from podium.eval.data import DataError, read_many
        from podium.eval.offline import by_category, default_routers, evaluate

        def say(message: str) -> None:
            click.echo(f"podium eval: {message}", err=True)

        try:
            train = read_many(train_files)
            test = read_many(test_files)
        except DataError as error:
            raise click.ClickException(str(error)) from None
        if exclude_train_category:
            keep = np.flatnonzero(~np.isin(train.eval_names, list(exclude_train_category)))
            train = train.subset(keep)
        if test_category:
            test = test.subset(np.flatnonzero(np.isin(test.eval_names, list(test_category))))
        if len(train) == 0 or len(test) == 0:
            raise click.ClickException("no rows left in the train or test set after filtering")
        routers = default_routers()
        if router_names:
            unknown = sorted(set(router_names) - {spec.name for spec in routers})
            if unknown:
                known = ", ".join(spec.name for spec in routers)
                raise click.ClickException(f"unknown router {unknown[0]!r} (known: {known})")
            routers = [spec for spec in routers if spec.name in router_names]
        embedder = _embedder(embeddings)
        say(f"{len(train)} train and {len(test)} test queries, {len(test.models)} models")
        try:
            report = evaluate(train, test, routers=routers, embedder=embedder, progress=say)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        text = json.dumps(report, indent=2)
        if json_out:
            Path(json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(json_out).write_text(text + "\n", encoding="utf-8")
            say(f"wrote {json_out}")
        else:
            sys.stdout.write(text + "\n")
        if plot_out:
            from podium.eval.plots import plot_report

            try:
                plot_report(
                    report,
                    Path(plot_out),
                    title=" + ".join(Path(f).parent.name + "/" + Path(f).name for f in test_files),
                )
            except RuntimeError as error:
                raise click.ClickException(str(error)) from None
            say(f"wrote {plot_out}")
        if category_out:
            details = by_category(train, test, routers[0], embedder=embedder)
            Path(category_out).write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
            say(f"wrote {category_out}")
        for line in _headline(report):
            click.echo(line, err=True)
