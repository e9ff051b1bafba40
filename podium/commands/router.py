"""``podium router``: train, calibrate, shadow, promote and roll back the learned router.

Artifacts live in ``<data_dir>/routers`` (or ``--out``); a running gateway serves the
promoted one and notices a promotion or rollback within a second, without a restart.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import click

from podium.commands._access import CONFIG_OPTION, load, seconds, store_path


def router_group(main: click.Group) -> click.Group:
    """The ``router`` group, shared with other routing commands: created once."""
    existing = main.commands.get("router")
    if isinstance(existing, click.Group):
        return existing

    @main.group(name="router")
    def group() -> None:
        """Train, calibrate, compare and promote the learned router."""

    return group


def _artifacts(config_path: str | None, out: str | None) -> Any:
    from podium.routing.artifacts import ArtifactStore

    if out is not None:
        return ArtifactStore(Path(out))
    return ArtifactStore(load(config_path).resolved_data_dir() / "routers")


def _since(text: str | None) -> float | None:
    """A duration back from now (``7d``), a Unix time, or an ISO date/time."""
    if text is None:
        return None
    try:
        return time.time() - seconds(text)
    except click.BadParameter:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    from datetime import datetime

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: give a duration (7d), a Unix time or an ISO date"
        ) from None


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in pairs:
        model, sep, worker = pair.partition("=")
        if not sep or not model or not worker:
            raise click.BadParameter(f"{pair!r}: use DATA_MODEL=WORKER")
        mapping[model] = worker
    return mapping


def _embedder(enabled: bool) -> Any:
    if not enabled:
        return None
    from podium.routing.embeddings import load_embedder

    try:
        return load_embedder()
    except Exception as error:
        raise click.ClickException(f"embeddings unavailable: {error}") from None


async def _trace_examples(
    config_path: str | None, since: float | None, workflows: bool
) -> list[Any]:
    from podium.routing.training import iter_training_examples
    from podium.store.sqlite import SQLiteStore

    store = SQLiteStore(store_path(load(config_path)))
    await store.open()
    try:
        return [
            example async for example in iter_training_examples(store, since, workflows=workflows)
        ]
    finally:
        await store.close()


def _describe(version: Any, current: Any) -> str:
    meta = version.metadata()
    inner = meta.get("metadata", {})
    metrics = inner.get("metrics", {})
    policy = meta.get("policy", {})
    mark = "*" if current is not None and current.number == version.number else " "
    brier = f"brier {metrics['brier']:.4f}" if "brier" in metrics else "no held-out metrics"
    return (
        f"{mark} {version.name:<14} {inner.get('created_at', '?'):<21} "
        f"{len(meta.get('models', [])):>3} models  {inner.get('rows', '?'):>6} rows  {brier}  "
        f"policy {policy.get('kind')} lambda={policy.get('lam', 0):g}"
        + (f" floor={policy['floor']:.3f}" if policy.get("floor") else "")
    )


def register(main: click.Group) -> None:
    group = router_group(main)

    @group.command("train")
    @click.option(
        "--data",
        "data_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="RouterBench-format CSV (repeatable).",
    )
    @click.option(
        "--from-traces",
        is_flag=True,
        help="Also learn from this gateway's traces that carry quality signals.",
    )
    @click.option("--since", help="With --from-traces: only traces newer than this (7d, ISO date).")
    @click.option(
        "--examples",
        "example_files",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        help="JSON lines of examples (prompt, worker, quality 0..1, cost_usd, output_tokens), "
        "learned like traces; `podium eval live` writes them from its train log (repeatable).",
    )
    @click.option(
        "--map",
        "maps",
        multiple=True,
        help="DATA_MODEL=WORKER: call a CSV model by a configured worker's name.",
    )
    @click.option(
        "--out",
        type=click.Path(file_okay=False),
        help="Artifact directory (default: <data_dir>/routers).",
    )
    @click.option(
        "--embeddings/--no-embeddings",
        default=False,
        show_default=True,
        help="Add the shipped sentence embeddings to the prompt features.",
    )
    @click.option(
        "--knn/--no-knn",
        default=True,
        show_default=True,
        help="Blend the quality heads with 100 nearest neighbours over the shipped embeddings.",
    )
    @click.option(
        "--calibration-fraction",
        default=0.15,
        show_default=True,
        type=float,
        help="Share of rows held out to measure and calibrate on.",
    )
    @click.option(
        "--calibration-folds",
        default=0,
        show_default=True,
        type=click.IntRange(0),
        help="Cross-validate instead of holding rows out: every row is predicted by a model "
        "trained without it (2 or more folds; the saved model uses all rows).",
    )
    @click.option(
        "--workflows/--no-workflows",
        default=True,
        show_default=True,
        help="Learn templated workflows (program(a,b), cascade(a,b,c)) from their traces and "
        "examples, so the learned router can choose them as it chooses workers.",
    )
    @click.option("--promote", "promote_now", is_flag=True, help="Promote the new version.")
    @CONFIG_OPTION
    def train(
        data_files: tuple[str, ...],
        from_traces: bool,
        since: str | None,
        example_files: tuple[str, ...],
        maps: tuple[str, ...],
        out: str | None,
        embeddings: bool,
        knn: bool,
        calibration_fraction: float,
        calibration_folds: int,
        workflows: bool,
        promote_now: bool,
        config_path: str | None,
    ) -> None:
        """Fit a new learned-router version from CSV files and/or traces."""
        import numpy as np

        from podium.eval.data import DataError, read_csv
        from podium.routing.calibrate import train_with_calibration
        from podium.routing.training import (
            examples_to_data,
            read_examples,
            rename_models,
            union,
        )
        from podium.workflow import parse_workflow_key

        if not data_files and not from_traces and not example_files:
            raise click.UsageError(
                "give --data FILE.csv, --examples FILE.jsonl and/or --from-traces"
            )
        if not 0 <= calibration_fraction < 1:
            raise click.BadParameter("must be in [0, 1)", param_hint="--calibration-fraction")
        mapping = _mapping(maps)
        parts = []
        try:
            parts = [rename_models(read_csv(f), mapping) for f in data_files]
        except DataError as error:
            raise click.ClickException(str(error)) from None
        tokens: dict[str, float] = {}
        traces_used = 0
        examples = []
        if from_traces:
            examples = asyncio.run(_trace_examples(config_path, _since(since), workflows))
            traces_used = len(examples)
            click.echo(f"podium router: {traces_used} traces with quality signals", err=True)
        try:
            for name in example_files:
                examples.extend(read_examples(Path(name)))
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        if not workflows:
            examples = [e for e in examples if parse_workflow_key(e.worker) is None]
        if examples:
            trace_data, tokens = examples_to_data(examples)
            parts.append(trace_data)
        if not parts or sum(len(p) for p in parts) < 2:
            raise click.ClickException(
                "not enough training data (traces need a captured prompt and a feedback score)"
            )
        data = union(parts)
        output_tokens = np.asarray([tokens.get(m, 0.0) for m in data.models], dtype=np.float64)
        click.echo(
            f"podium router: training on {len(data)} rows x {len(data.models)} models", err=True
        )
        from podium.eval.offline import knn_options
        from podium.routing.learned import TrainOptions

        options, neighbour_embedder = TrainOptions(), None
        if knn:
            try:
                neighbour_embedder = _embedder(True)
                options = knn_options()
            except click.ClickException as error:
                click.echo(f"podium router: {error.message}; training without k-NN", err=True)
        model = train_with_calibration(
            data,
            fraction=calibration_fraction,
            folds=calibration_folds,
            options=options,
            neighbour_embedder=neighbour_embedder,
            embedder=_embedder(embeddings),
            output_tokens=output_tokens,
            metadata={
                "sources": [Path(f).name for f in (*data_files, *example_files)]
                + (["traces"] if from_traces else []),
                "traces": traces_used,
                "since": since,
                "rows": len(data),
            },
        )
        store = _artifacts(config_path, out)
        version = store.save(model)
        metrics = model.metadata.get("metrics", {})
        click.echo(f"wrote {version.name} ({version.path.name}); held-out metrics: {metrics}")
        if promote_now:
            store.promote(version.number)
            click.echo(f"promoted {version.name}")

    @group.command("calibrate")
    @click.option("--version", "version_text", help="Version to calibrate (default: newest).")
    @click.option(
        "--target-quality",
        type=click.FloatRange(0, 1),
        help="Reach this mean quality at the least cost.",
    )
    @click.option(
        "--max-cost-per-request",
        type=click.FloatRange(min=0, min_open=True),
        help="The best quality whose mean cost per request stays under this (USD).",
    )
    @click.option(
        "--match-best-worker",
        is_flag=True,
        help="Reach the best single worker's quality on the calibration rows at the least cost.",
    )
    @click.option(
        "--within-best-worker-cost",
        is_flag=True,
        help="The best quality whose mean cost stays within the best single worker's on the "
        "calibration rows (no more than always asking it costs).",
    )
    @click.option(
        "--floor",
        is_flag=True,
        help="Also pick a floor: questions where every worker's predicted quality is below it "
        "go to the cheapest worker (the largest floor that keeps the goal's quality on the "
        "calibration rows).",
    )
    @click.option("--out", type=click.Path(file_okay=False), help="Artifact directory.")
    @CONFIG_OPTION
    def calibrate_command(
        version_text: str | None,
        target_quality: float | None,
        max_cost_per_request: float | None,
        match_best_worker: bool,
        within_best_worker_cost: bool,
        floor: bool,
        out: str | None,
        config_path: str | None,
    ) -> None:
        """Pick lambda on the artifact's calibration rows and write it into the artifact."""
        from podium.routing.artifacts import ArtifactError
        from podium.routing.calibrate import calibrate

        goals = (
            target_quality is not None,
            max_cost_per_request is not None,
            match_best_worker,
            within_best_worker_cost,
        )
        if sum(goals) != 1:
            raise click.UsageError(
                "give exactly one of --target-quality, --match-best-worker, "
                "--max-cost-per-request or --within-best-worker-cost"
            )
        store = _artifacts(config_path, out)
        try:
            version = store.get(version_text) if version_text else store.versions()[-1]
        except (ArtifactError, IndexError):
            raise click.ClickException(
                f"no such version {version_text or '(none trained)'}"
            ) from None
        model = store.load(version)
        try:
            policy = calibrate(
                model,
                target_quality=target_quality,
                max_cost=max_cost_per_request,
                match_best_worker=match_best_worker,
                within_best_worker_cost=within_best_worker_cost,
                floor=floor,
            )
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        model.policy = policy
        store.rewrite(version, model)
        info = policy.calibrated
        status = "met" if info["met"] else "NOT met (closest setting chosen)"
        if "target_quality" in info and "best_worker" in info:
            status += f" (the best worker, {info['best_worker']}: {info['target_quality']:.3f})"
        elif "best_worker" in info:
            status += (
                f" (within the best worker's cost, {info['best_worker']}: "
                f"${info['max_cost_per_request']:.6f}, quality {info['best_worker_quality']:.3f})"
            )
        knobs = f"lambda={policy.lam:g}"
        if floor:
            knobs += (
                f", floor={policy.floor:.3f} ({info['floor_rows']} of {info['rows']} rows to the "
                "cheapest worker)"
            )
        click.echo(
            f"{version.name}: {knobs}; on {info['rows']} held-out rows: quality "
            f"{info['expected_quality']:.3f} at ${info['expected_cost']:.6f}/request; goal {status}"
        )

    @group.command("versions")
    @click.option("--out", type=click.Path(file_okay=False), help="Artifact directory.")
    @CONFIG_OPTION
    def versions(out: str | None, config_path: str | None) -> None:
        """List the trained versions (* marks the one in service)."""
        store = _artifacts(config_path, out)
        found = store.versions()
        if not found:
            click.echo("no learned-router versions yet: run `podium router train`")
            return
        current = store.current()
        for version in found:
            click.echo(_describe(version, current))

    @group.command("promote")
    @click.argument("version_text", metavar="VERSION")
    @click.option("--out", type=click.Path(file_okay=False), help="Artifact directory.")
    @CONFIG_OPTION
    def promote(version_text: str, out: str | None, config_path: str | None) -> None:
        """Serve VERSION (3, v3 or learned-v3); running gateways switch within a second."""
        from podium.routing.artifacts import ArtifactError

        store = _artifacts(config_path, out)
        try:
            version = store.promote(version_text)
        except ArtifactError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"promoted {version.name}")

    @group.command("rollback")
    @click.option("--out", type=click.Path(file_okay=False), help="Artifact directory.")
    @CONFIG_OPTION
    def rollback(out: str | None, config_path: str | None) -> None:
        """Serve the version that was in service before the last promotion."""
        from podium.routing.artifacts import ArtifactError

        store = _artifacts(config_path, out)
        try:
            version = store.rollback()
        except ArtifactError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"rolled back to {version.name}")

    @group.command("shadow")
    @click.option("--version", "version_text", help="Candidate version (default: newest).")
    @click.option("--since", default="24h", show_default=True, help="Traces newer than this.")
    @click.option("--limit", default=2000, show_default=True, type=click.IntRange(1, 10_000))
    @click.option("--out", type=click.Path(file_okay=False), help="Artifact directory.")
    @click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
    @CONFIG_OPTION
    def shadow(
        version_text: str | None,
        since: str,
        limit: int,
        out: str | None,
        as_json: bool,
        config_path: str | None,
    ) -> None:
        """Score a candidate version on recent traffic without serving it: where it would
        choose differently, and the predicted quality and cost of both choices."""
        from podium.routing.artifacts import ArtifactError
        from podium.routing.shadow import shadow_report

        config = load(config_path)
        store = _artifacts(config_path, out)
        try:
            candidate = store.get(version_text) if version_text else store.versions()[-1]
        except (ArtifactError, IndexError):
            raise click.ClickException(
                f"no such version {version_text or '(none trained)'}"
            ) from None
        report = asyncio.run(
            shadow_report(config, store_path(config), candidate.path, _since(since), limit)
        )
        report["candidate"] = candidate.name
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        click.echo(_shadow_text(report))


def _shadow_text(report: dict[str, Any]) -> str:
    n = report["scored"]
    lines = [
        f"candidate {report['candidate']} on {n} recent requests "
        f"({report['skipped']} skipped: no captured prompt or no answering worker)",
    ]
    if n == 0:
        return "\n".join(lines)
    lines.append(
        f"same worker as served: {report['agree']} ({report['agree'] / n:.0%}); "
        f"different: {n - report['agree']}"
    )
    served, cand = report["served"], report["candidate_choice"]
    lines.append(
        f"predicted quality: served {served['quality']:.3f}, candidate {cand['quality']:.3f}; "
        f"cost per request: served ${served['cost']:.6f} (actual ${served['actual_cost']:.6f}), "
        f"candidate ${cand['cost']:.6f}"
    )
    changes = Counter({tuple(k.split(" -> ")): v for k, v in report["changes"].items()})
    if changes:
        lines.append("where it would differ (served -> candidate: requests):")
        for (a, b), count in changes.most_common(10):
            lines.append(f"  {a} -> {b}: {count}")
    return "\n".join(lines)
