"""``podium policy eval-pii`` and ``podium policy eval-injection``: score the detectors on a
labelled corpus."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.3f}"


def register(main: click.Group) -> None:
    @main.group()
    def policy() -> None:
        """Score the content policy's detectors (PII, prompt injection)."""

    @policy.command("eval-pii")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Print the scores as JSON.")
    @click.option(
        "--engine",
        "engines",
        multiple=True,
        type=click.Choice(["patterns", "tagger", "presidio"]),
        help="Detector engines in priority order (default: patterns, tagger).",
    )
    @click.option(
        "--split",
        type=click.Choice(["all", "train", "dev"]),
        default="all",
        show_default=True,
        help="Score all records, or only the tagger's train (buckets 0-5) or dev (bucket 6) part.",
    )
    def eval_pii(file: Path, as_json: bool, engines: tuple[str, ...], split: str) -> None:
        """Precision, recall and F2 per entity type on a presidio-format corpus (a JSON list
        of {full_text, spans[{entity_type, start_position, end_position}]})."""
        from podium.policy.detect import PiiDetector
        from podium.policy.evaluate import load_pii_corpus, score_pii
        from podium.policy.train_names import split as split_records

        try:
            records = split_records(load_pii_corpus(file), split)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        detector = PiiDetector(engines or ("patterns", "tagger"))
        try:
            detector.inspect("Warm up: Jane Doe, jane@example.com")  # load models before timing
            report = score_pii(records, detector.inspect)
        except RuntimeError as error:
            raise click.ClickException(str(error)) from None
        report["engines"] = list(detector.engines)
        report["split"] = split
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        _print_pii(report)

    @policy.command("eval-injection")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--json", "as_json", is_flag=True, help="Print the rates as JSON.")
    @click.option(
        "--threshold", type=float, help="Classifier threshold (default: the shipped one)."
    )
    @click.option("--no-classifier", is_flag=True, help="Heuristics only.")
    @click.option(
        "--split",
        type=click.Choice(["all", "train", "held-out"]),
        default="all",
        show_default=True,
        help="Rows by the sha256 bucket rule: train (0-6) or held-out (7-9).",
    )
    def eval_injection(
        file: Path, as_json: bool, threshold: float | None, no_classifier: bool, split: str
    ) -> None:
        """Detection and false-positive rates on a CSV with columns prompt and type
        (benign/jailbreak; a file without type counts every row as an attack). Attack-only
        .txt (a prompt a line) and .json (garak's formats) files are read too."""
        from podium.policy.evaluate import load_injection_file, score_injection
        from podium.policy.guard import InjectionScreen
        from podium.policy.train_guard import bucket

        try:
            rows = load_injection_file(file)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        if split == "train":
            rows = [row for row in rows if bucket(row[0]) <= 6]
        elif split == "held-out":
            rows = [row for row in rows if bucket(row[0]) > 6]
        screen = InjectionScreen(threshold=threshold, use_classifier=not no_classifier)
        screen.verdict("warm up")  # load the classifier before timing
        report: dict[str, Any] = score_injection(rows, lambda text: screen.verdict(text).flagged)
        report["split"] = split
        report["threshold"] = None if no_classifier else screen.threshold
        if as_json:
            click.echo(json.dumps(report, indent=2))
            return
        click.echo(
            f"{report['rows']} prompts ({report['attacks']} attacks, {report['benign']} benign)"
        )
        click.echo(f"detection rate       {_fmt(report['detection_rate'])}")
        click.echo(f"false-positive rate  {_fmt(report['false_positive_rate'])}")
        click.echo(f"ms per prompt        {report['ms_per_prompt']:.3f}")


def _print_pii(report: dict[str, Any]) -> None:
    click.echo(
        f"{report['records']} records, engines: {', '.join(report['engines'])}, "
        f"{report['ms_per_kb']:.2f} ms/KB"
    )
    click.echo(f"{'corpus type':<18} {'podium type':<15} {'gold':>5} {'P':>6} {'R':>6} {'F2':>6}")
    for row in report["types"]:
        click.echo(
            f"{row['entity_type']:<18} {row['podium_type']:<15} {row['gold']:>5} "
            f"{_fmt(row['precision']):>6} {_fmt(row['recall']):>6} {_fmt(row['f2']):>6}"
        )
    for row in report["other_predictions"]:
        click.echo(
            f"{'(no gold type)':<18} {row['podium_type']:<15} {'-':>5} "
            f"{_fmt(row['precision']):>6} {'-':>6} {'-':>6}  ({row['predicted']} predicted)"
        )
    click.echo(f"not scored: {', '.join(report['not_scored'])}")
