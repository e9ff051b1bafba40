"""``podium eval live``: real questions through a running Podium (in-process from a config,
or at ``--url``), every strategy scored against gold; results, report and plot in ``--out``."""

from __future__ import annotations

import asyncio
import shlex
import sys
from pathlib import Path

import click

from podium.commands.eval_offline import eval_group


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(main: click.Group) -> None:
    group = eval_group(main)

    @group.command("live")
    @click.option(
        "--tasks",
        multiple=True,
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A JSONL task file (repeatable), e.g. ../shared/data/tasks/arc_easy/dev.jsonl.",
    )
    @click.option("--limit", type=click.IntRange(1), help="Questions per task file (first N).")
    @click.option(
        "--strategies",
        default="single,router,cascade,workflow,conductor,moa",
        show_default=True,
        help="Comma-separated: single (every worker alone), single:<worker>, router, cascade, "
        "workflow, conductor, moa.",
    )
    @click.option(
        "--workers",
        help="Comma-separated workers, cheapest first (default: the config's, by price).",
    )
    @click.option(
        "--url", help="A running Podium to ask (default: start one in-process from --config)."
    )
    @click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="The pool to serve (default examples/pool.yaml); with --url, the server's config "
        "(the router trains on its store).",
    )
    @click.option(
        "--out",
        default="reports/live",
        show_default=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Results folder: results.jsonl (resumable), results.json, report.md and "
        "quality_cost.png.",
    )
    @click.option(
        "--state",
        "state_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="The in-process gateway's data directory (default: <out>/state).",
    )
    @click.option(
        "--concurrency",
        default=2,
        show_default=True,
        type=click.IntRange(1, 64),
        help="Requests in flight at once.",
    )
    @click.option(
        "--timeout",
        default=300.0,
        show_default=True,
        type=float,
        help="Seconds to wait for one answer (a slower one is a recorded failure).",
    )
    @click.option(
        "--code-timeout",
        default=10.0,
        show_default=True,
        type=float,
        help="Seconds a code answer may run against its tests.",
    )
    @click.option(
        "--train-router",
        "train_tasks",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="A TRAIN-split task file (repeatable): first run each question through every "
        "worker, post correctness as feedback, train the learned router from the traces.",
    )
    @click.option("--train-limit", type=click.IntRange(1), help="Questions per train file.")
    @click.option(
        "--train-workflow",
        "train_workflows",
        multiple=True,
        help="A workflow the train split asks too, as TEMPLATE(WORKER,...) (repeatable, e.g. "
        "'program(qwen2.5-coder-1.5b,python)'): the router learns when it pays.",
    )
    @click.option(
        "--calibration",
        type=click.Choice(["match-best-worker", "within-best-worker-cost"]),
        default="match-best-worker",
        show_default=True,
        help="What the trained router is calibrated to on the train split: the best worker's "
        "accuracy at the least cost, or the best accuracy at no more than that worker's cost.",
    )
    @click.option(
        "--train-workflow-limit",
        type=click.IntRange(1),
        help="Train questions per file the workflows answer (default: as many as the workers): "
        "a workflow measured on a sample, as on a sample of real traffic.",
    )
    @click.option(
        "--report-only",
        is_flag=True,
        help="Only write the report from what results.jsonl in --out holds (asks nothing).",
    )
    @click.option("--api-key-env", help="Environment variable with an API key for the gateway.")
    @click.option(
        "--admin-key-env",
        default="PODIUM_ADMIN_KEY",
        show_default=True,
        help="Environment variable with the admin key (traces; loopback needs none).",
    )
    def live(
        tasks: tuple[Path, ...],
        limit: int | None,
        strategies: str,
        workers: str | None,
        url: str | None,
        config_path: Path | None,
        out: Path,
        state_dir: Path | None,
        concurrency: int,
        timeout: float,
        code_timeout: float,
        train_tasks: tuple[Path, ...],
        train_limit: int | None,
        train_workflows: tuple[str, ...],
        train_workflow_limit: int | None,
        calibration: str,
        report_only: bool,
        api_key_env: str | None,
        admin_key_env: str,
    ) -> None:
        """Ask real questions through Podium and score every strategy against gold."""
        from podium.eval.live import strategies_for
        from podium.eval.run import LiveOptions, evaluate
        from podium.eval.scoring import TaskFileError
        from podium.workflow import parse_workflow_key

        names = _names(strategies)
        try:
            strategies_for(names, ["w"])
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--strategies") from None
        for key in train_workflows:
            if parse_workflow_key(key) is None:
                raise click.BadParameter(
                    f"{key!r}: write TEMPLATE(WORKER,...)", param_hint="--train-workflow"
                )
        options = LiveOptions(
            tasks=list(tasks),
            out=out,
            limit=limit,
            strategies=names,
            workers=_names(workers) if workers else None,
            url=url,
            config=config_path,
            state_dir=state_dir,
            concurrency=concurrency,
            timeout=timeout,
            code_timeout=code_timeout,
            train_tasks=list(train_tasks),
            train_limit=train_limit,
            train_workflows=list(train_workflows),
            train_workflow_limit=train_workflow_limit,
            calibration=calibration,
            api_key_env=api_key_env,
            admin_key_env=admin_key_env,
            # the command that asks, not the one that only rewrote the report
            command="podium "
            + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--report-only"),
            report_only=report_only,
        )
        try:
            result = asyncio.run(evaluate(options))
        except (TaskFileError, ValueError) as error:
            raise click.ClickException(str(error)) from None
        for name, summary in result["strategies"].items():
            click.echo(
                f"{name:<32} acc {summary['accuracy']:.3f} "
                f"[{summary['ci95'][0]:.3f}, {summary['ci95'][1]:.3f}]  "
                f"tokens/q {summary['tokens_per_question']:.0f}  calls/q "
                f"{summary['calls_per_question']:.2f}  cost/q ${summary['cost_per_question']:.8f}  "
                f"p50 {summary['latency_p50_ms']:.0f} ms"
            )
        click.echo(f"report: {out / 'report.md'}")
