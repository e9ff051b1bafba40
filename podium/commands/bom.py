"""``podium bom``: the worker pool as a CycloneDX 1.6 ML-BOM (JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from podium.commands._access import CONFIG_OPTION, load
from podium.policy.bom import build_bom


def register(main: click.Group) -> None:
    @main.command()
    @CONFIG_OPTION
    @click.option("--out", type=click.Path(dir_okay=False), help="Write here (default: stdout).")
    @click.option("--no-libraries", is_flag=True, help="Models only, without runtime libraries.")
    def bom(config_path: str | None, out: str | None, no_libraries: bool) -> None:
        """Export models, versions, sha256 pins, vendors and data-handling profiles."""
        document = build_bom(load(config_path), libraries=not no_libraries)
        text = json.dumps(document, indent=2) + "\n"
        if out is None:
            click.echo(text, nl=False)
            return
        Path(out).write_text(text, encoding="utf-8")
        models = sum(1 for c in document["components"] if c["type"] == "machine-learning-model")
        click.echo(f"wrote {out}: {models} model(s), CycloneDX {document['specVersion']}", err=True)
