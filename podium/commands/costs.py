"""``podium costs ...`` (price tables and projections) and ``podium diagnose`` (the memo)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import click
import orjson

from podium.config import DEFAULT_CONFIG_FILE, ConfigError, PodiumConfig, load_config


def _config(path: str | None) -> PodiumConfig | None:
    """podium.yaml when one is named or present: its workers and rules take part."""
    chosen = path or os.environ.get("PODIUM_CONFIG")
    if chosen is None and not Path(DEFAULT_CONFIG_FILE).is_file():
        return None
    try:
        return load_config(chosen)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _timestamp(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date such as 2026-01-31") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.timestamp()


def _project(
    workload: Path,
    prices: tuple[Path, ...],
    scenario: str | None,
    config_path: str | None,
    frontier: str | None,
    offline_report: Path | None,
    period_days: float | None,
    since: str | None,
    until: str | None,
    group_by: str,
) -> Any:
    from podium.costs.prices import PriceError, load_prices
    from podium.costs.project import project, read_offline_report
    from podium.costs.sources import load_workloads
    from podium.costs.workloads import WorkloadError

    config = _config(config_path)
    try:
        table = load_prices(prices, config)
        workloads = load_workloads(
            workload,
            table,
            period_days=period_days,
            since=_timestamp(since),
            until=_timestamp(until),
            group_by=group_by,  # type: ignore[arg-type]
        )
        chosen = scenario and table.scenario(scenario)
        point = read_offline_report(offline_report) if offline_report else None
        costs = config.costs if config else None
        rules = (
            [rule.model_dump(exclude_none=True) for rule in config.routing.rules] if config else []
        )
        return project(
            workloads,
            table,
            frontier=frontier or (costs.frontier if costs else None),
            rules=rules or None,
            default_worker=config.default_worker if config else None,
            learned_point=point,
            scenario=chosen or None,
        )
    except (PriceError, WorkloadError) as error:
        raise click.ClickException(str(error)) from None


_COMMON = [
    click.option(
        "--prices",
        "prices",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A prices file (YAML or JSON) layered over the packaged table; repeatable.",
    ),
    click.option("--scenario", help="A named scenario (e.g. next-quarter) or KEY=-30%,..."),
    click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        help="podium.yaml whose workers, prices and rules to use (default ./podium.yaml).",
    ),
    click.option(
        "--frontier", help="The single-vendor model (default: your main vendor's flagship)."
    ),
    click.option(
        "--offline-report",
        type=click.Path(dir_okay=False, path_type=Path),
        help="JSON from `podium eval offline` for the learned router's cost and quality.",
    ),
    click.option(
        "--period-days", type=float, help="Days the usage covers (default: from timestamps)."
    ),
    click.option("--since", help="Traces only: from this date/time (ISO)."),
    click.option("--until", help="Traces only: before this date/time (ISO)."),
    click.option(
        "--group-by",
        default="auto",
        show_default=True,
        type=click.Choice(["auto", "contract", "caller", "route", "model"]),
        help="Traces only: what makes a workload.",
    ),
]


def _common(function: Any) -> Any:
    for option in reversed(_COMMON):
        function = option(function)
    return function


def register(main: click.Group) -> None:
    @main.group()
    def costs() -> None:
        """Price tables and what each architecture would cost a year."""

    @costs.command("project")
    @click.option(
        "--workload",
        "workload",
        required=True,
        type=click.Path(path_type=Path),
        help="Workloads YAML, usage export (CSV/JSONL) or Podium trace store (podium.db).",
    )
    @_common
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    def project_command(workload: Path, as_json: bool, **options: Any) -> None:
        """Annual cost of single-vendor frontier, frontier per workload, rules router and
        learned router for the same workloads, with quality and price sensitivity."""
        from podium.costs.render import projection_json, projection_text

        projection = _project(workload, **options)
        if as_json:
            click.echo(orjson.dumps(projection_json(projection), option=orjson.OPT_INDENT_2))
        else:
            click.echo(projection_text(projection))

    @costs.command("prices")
    @click.option(
        "--prices",
        "prices",
        multiple=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="A prices file layered over the packaged table; repeatable.",
    )
    @click.option("--scenario", help="Show prices under a scenario.")
    @click.option("--config", "config_path", type=click.Path(dir_okay=False))
    @click.option("--json", "as_json", is_flag=True)
    def prices_command(
        prices: tuple[Path, ...], scenario: str | None, config_path: str | None, as_json: bool
    ) -> None:
        """The price table in use (USD per 1M tokens), its date and sources."""
        from podium.costs.prices import PriceError, load_prices
        from podium.costs.render import long_prompt_rates
        from podium.costs.render import table as render_table

        try:
            loaded = load_prices(prices, _config(config_path))
            if scenario:
                loaded = loaded.with_scenario(loaded.scenario(scenario))
        except PriceError as error:
            raise click.ClickException(str(error)) from None
        entries = sorted(loaded.models.values(), key=lambda p: (p.vendor, p.input, p.model))
        if as_json:
            payload = {
                "as_of": loaded.as_of,
                "layers": loaded.layers,
                "models": {
                    p.model: {
                        "vendor": p.vendor,
                        "input": p.input,
                        "output": p.output,
                        "cached_input": p.cached_input,
                        "tiers": [
                            {
                                "above": tier.above,
                                "input": tier.input,
                                "output": tier.output,
                                "cached_input": tier.cached_input,
                            }
                            for tier in p.tiers
                        ],
                        "grade": p.grade,
                        "kind": p.kind,
                        "source": p.source,
                        "as_of": p.as_of,
                    }
                    for p in entries
                },
                "scenarios": {s.name: dict(s.changes) for s in loaded.scenarios.values()},
            }
            click.echo(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
            return
        rows = [
            [
                p.model,
                p.vendor,
                f"{p.input:.3f}",
                f"{p.output:.3f}",
                "" if p.cached_input is None else f"{p.cached_input:.3f}",
                long_prompt_rates(p),
                p.grade or "?",
                p.kind,
            ]
            for p in entries
        ]
        click.echo(
            render_table(
                ["Model", "Vendor", "Input", "Output", "Cached", "Long prompts", "Grade", "Kind"],
                rows,
                right={2, 3, 4},
            )
        )
        click.echo(
            f"\nUSD per 1M tokens; list prices as of {loaded.as_of}; "
            f"from {', '.join(loaded.layers)}"
        )
        if any(p.tiers for p in entries):
            click.echo(
                "Long prompts: input / output rates for every token of a request whose input "
                "passes the threshold"
            )
        if warning := loaded.staleness_warning():
            click.echo(f"warning: {warning}", err=True)

    @main.command("diagnose")
    @click.option(
        "--usage",
        "usage",
        required=True,
        type=click.Path(path_type=Path),
        help="Usage export (CSV/JSONL), workloads YAML or Podium trace store.",
    )
    @click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path("memo.md"),
        show_default=True,
        help="Where to write the memo; charts go next to it.",
    )
    @click.option("--html", "html", is_flag=True, help="Also write MEMO.html with charts inline.")
    @click.option("--no-charts", is_flag=True, help="Skip the charts (no matplotlib needed).")
    @click.option("--title", help="Organisation name for the memo's heading.")
    @_common
    def diagnose(
        usage: Path, out: Path, html: bool, no_charts: bool, title: str | None, **options: Any
    ) -> None:
        """An architecture memo from real usage: where the spend goes, lock-in points,
        proposed rules and worker pool, savings now and next quarter, governance items."""
        from podium.costs.memo import write_memo

        scenario = options.pop("scenario", None)
        now = _project(usage, scenario=None, **options)
        next_name = scenario or "next-quarter"
        try:
            later = _project(usage, scenario=next_name, **options)
        except click.ClickException as error:
            click.echo(f"warning: no {next_name} projection: {error.message}", err=True)
            later = None
        from podium.costs.charts import ChartsUnavailable

        try:
            written = write_memo(
                now, later, out, html=html, charts=not no_charts, title=title, scenario=next_name
            )
        except ChartsUnavailable as error:
            raise click.ClickException(str(error)) from None
        for path in written:
            click.echo(f"wrote {path}")
