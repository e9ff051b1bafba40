"""``podium contracts ls|show|validate|test|promote|stats``.

``ls``, ``show`` and ``validate`` read the contracts directory only. ``test`` runs a contract's
examples through a gateway (built in-process from the configuration, or a running one with
``--url``) and reports the evaluator's pass rate, cost and latency per worker; every example's
verdict is stored as a quality signal on its trace. ``promote`` makes a version current and
prints how it did against the current one (live and shadow calls, from the trace store).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson
import yaml

from podium.config import ConfigError, PodiumConfig, load_config
from podium.contracts.evaluate import Verdict, evaluate
from podium.contracts.loader import (
    ContractError,
    ContractSet,
    load_contracts,
    load_dir,
    load_file,
    write_promotion,
)
from podium.contracts.model import Contract
from podium.contracts.runner import ContractCallError
from podium.contracts.stats import contract_stats
from podium.errors import PodiumError

T = TypeVar("T")
CONFIG_HELP = "podium.yaml to use (default: ./podium.yaml if present, else embedded)."


def _config(path: str | None) -> PodiumConfig:
    try:
        return load_config(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _contracts(config: PodiumConfig, directory: str | None) -> ContractSet:
    try:
        if directory is not None:
            return load_dir(Path(directory))
        if config.contracts.dir is None:
            raise click.ClickException(
                "no contracts directory: set contracts.dir in podium.yaml or pass --dir"
            )
        return load_contracts(config.contracts, config.resolved_data_dir())
    except ContractError as error:
        raise click.ClickException(str(error)) from None


def _contract(contracts: ContractSet, name: str, version: str | None) -> Contract:
    found = contracts.get(name, version)
    if found is None:
        known = ", ".join(contracts.names()) or "none"
        what = f"{name}@{version}" if version else name
        raise click.ClickException(f"no contract {what} (contracts: {known})")
    return found


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


# -- running examples -----------------------------------------------------------------------------


@dataclass
class Outcome:
    example: int
    worker: str
    passed: bool | None
    detail: str
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: int = 0
    error: str | None = None
    output: Any = None


@dataclass
class WorkerReport:
    worker: str
    outcomes: list[Outcome] = field(default_factory=list)

    def row(self) -> list[str]:
        judged = [o for o in self.outcomes if o.passed is not None]
        passed = sum(1 for o in judged if o.passed)
        valid = sum(1 for o in self.outcomes if o.error is None)
        rate = f"{passed / len(judged):.2f}" if judged else "-"
        latency = [o.latency_ms for o in self.outcomes]
        return [
            self.worker,
            str(len(self.outcomes)),
            f"{valid}/{len(self.outcomes)}",
            f"{passed}/{len(judged)}",
            rate,
            f"{statistics.fmean([o.cost_usd for o in self.outcomes]):.6f}",
            f"{statistics.median(latency):.0f}" if latency else "-",
            f"{statistics.fmean([o.attempts for o in self.outcomes]):.1f}",
        ]


REPORT_HEADER = [
    "worker",
    "examples",
    "schema-valid",
    "passed",
    "pass rate",
    "mean $",
    "p50 ms",
    "attempts",
]

# One example through some gateway: (contract, example index, forced worker or None) -> Outcome.
RunExample = Callable[[Contract, int, str | None], Awaitable[Outcome]]


async def run_examples(
    contract: Contract,
    workers: Sequence[str | None],
    run: RunExample,
    progress: Callable[[str], None] = lambda _: None,
) -> list[WorkerReport]:
    reports = []
    for worker in workers:
        report = WorkerReport(worker or "(routed)")
        for index in range(len(contract.examples)):
            outcome = await run(contract, index, worker)
            report.outcomes.append(outcome)
            mark = "pass" if outcome.passed else ("fail" if outcome.passed is False else "n/a")
            progress(
                f"  {report.worker} example {index + 1}/{len(contract.examples)}: {mark} "
                f"({outcome.error or outcome.detail})"
            )
        reports.append(report)
    return reports


def in_process(config: PodiumConfig) -> tuple[RunExample, Callable[[], Awaitable[None]]]:
    """Examples through a gateway built from ``config`` in this process."""
    from podium.api.contracts import runner_of
    from podium.app import create_podium

    podium = create_podium(config)
    runner = runner_of(podium)
    assert runner is not None
    started = False

    async def run(contract: Contract, index: int, worker: str | None) -> Outcome:
        nonlocal started
        if not started:
            for hook in podium.app.on_startup:
                await hook()
            started = True
        example = contract.examples[index]
        began = time.perf_counter()
        try:
            result = await runner.call(
                contract.name,
                example.input,
                version=contract.version,
                workers=[worker] if worker else None,
                mode="test",
            )
        except PodiumError as error:
            tried = error.attempts if isinstance(error, ContractCallError) else []
            return Outcome(
                index,
                worker or "?",
                False,
                error.message,
                latency_ms=(time.perf_counter() - began) * 1000,
                attempts=len(tried),
                error=error.code or error.kind,
            )
        verdict = await evaluate(
            contract, result.output, example.expected, input=example.input, judge=runner.judge
        )
        runner.record_signal(result.trace_id, verdict)
        return Outcome(
            index,
            result.worker,
            verdict.passed,
            verdict.detail,
            result.cost_usd,
            result.latency_ms,
            result.attempts,
            output=result.output,
        )

    async def close() -> None:
        if started:
            for hook in reversed(podium.app.on_shutdown):
                await hook()

    return run, close


def remote(url: str, key: str | None) -> tuple[RunExample, Callable[[], Awaitable[None]]]:
    """Examples through a running gateway; verdicts go back as feedback on each trace."""
    import httpx

    client = httpx.AsyncClient(
        base_url=url.rstrip("/"),
        headers={"authorization": f"Bearer {key}"} if key else {},
        timeout=600.0,
    )

    async def run(contract: Contract, index: int, worker: str | None) -> Outcome:
        example = contract.examples[index]
        began = time.perf_counter()
        reply = await client.post(
            f"/v1/contracts/{contract.name}",
            json={"input": example.input, "version": contract.version},
        )
        elapsed = (time.perf_counter() - began) * 1000
        body = reply.json()
        if reply.status_code != 200:
            error = body.get("error", {})
            return Outcome(
                index,
                "?",
                False,
                str(error.get("message")),
                latency_ms=elapsed,
                error=str(error.get("code") or reply.status_code),
            )
        verdict: Verdict = await evaluate(
            contract, body["output"], example.expected, input=example.input
        )
        if verdict.passed is not None:
            await client.post(
                "/v1/feedback",
                json={
                    "trace_id": body["trace_id"],
                    "name": "contract.pass",
                    "score": verdict.score if verdict.score is not None else verdict.passed,
                    "comment": verdict.detail[:200],
                },
            )
        return Outcome(
            index,
            str(body["worker"]),
            verdict.passed,
            verdict.detail,
            float(body["cost_usd"]),
            elapsed,
            int(body.get("attempts", 1)),
            output=body["output"],
        )

    return run, client.aclose


def _run(work: Awaitable[T]) -> T:
    async def go() -> T:
        return await work

    return asyncio.run(go())


def _with_store(config: PodiumConfig, work: Callable[[Any], Awaitable[T]]) -> T:
    from podium.store.factory import create_store

    async def go() -> T:
        store = create_store(config.store, config.resolved_data_dir())
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


def stats_rows(rows: list[dict[str, Any]]) -> str:
    def num(value: Any, digits: int) -> str:
        return "-" if value is None else f"{float(value):.{digits}f}"

    return table(
        [
            "contract",
            "version",
            "mode",
            "worker",
            "calls",
            "ok",
            "pass rate",
            "agree",
            "mean $",
            "mean ms",
            "attempts",
        ],
        [
            [
                r["contract"],
                r["version"],
                r["mode"],
                r["worker"] or "-",
                str(r["calls"]),
                str(r["ok"]),
                num(r["pass_rate"], 2) + (f" ({r['judged']})" if r["judged"] else ""),
                num(r["agreement"], 2),
                num(r["mean_cost_usd"], 6),
                num(r["mean_latency_ms"], 0),
                num(r["mean_attempts"], 1),
            ]
            for r in rows
        ],
    )


def register(main: click.Group) -> None:
    @main.group()
    def contracts() -> None:
        """Behaviour contracts: list, show, validate, test, promote, statistics."""

    config_option = click.option(
        "--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP
    )
    dir_option = click.option(
        "--dir", "directory", type=click.Path(file_okay=False), help="contracts directory"
    )

    @contracts.command("ls")
    @config_option
    @dir_option
    def ls(config_path: str | None, directory: str | None) -> None:
        """List contracts, their versions and which one is current."""
        found = _contracts(_config(config_path), directory)
        rows = []
        for name in found.names():
            current = found.get(name)
            assert current is not None
            rows.append(
                [
                    name,
                    ", ".join(found.versions(name)),
                    found.current_version(name) or "-",
                    found.shadow.get(name, "-"),
                    current.evaluator.kind,
                    str(len(current.examples)),
                    current.description[:60],
                ]
            )
        header = ["name", "versions", "current", "shadow", "evaluator", "examples", "description"]
        click.echo(table(header, rows) if rows else "no contracts")

    @contracts.command("show")
    @click.argument("name")
    @click.option("--version", "version", default=None)
    @click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML")
    @config_option
    @dir_option
    def show(
        name: str,
        version: str | None,
        as_json: bool,
        config_path: str | None,
        directory: str | None,
    ) -> None:
        """Print a contract (the current version unless --version)."""
        contract = _contract(_contracts(_config(config_path), directory), name, version)
        data = contract.model_dump(mode="json", exclude_none=True)
        if as_json:
            click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        else:
            click.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip())

    @contracts.command("validate")
    @click.argument("paths", nargs=-1, type=click.Path())
    @config_option
    def validate(paths: tuple[str, ...], config_path: str | None) -> None:
        """Check contract files (default: the configured directory). Exit 1 on any problem."""
        files: list[Path] = []
        if paths:
            for given in map(Path, paths):
                files += sorted(given.glob("*.y*ml")) if given.is_dir() else [given]
        else:
            config = _config(config_path)
            if config.contracts.dir is None:
                raise click.ClickException(
                    "no contracts directory: set contracts.dir or give paths"
                )
            files = sorted(config.contracts.dir.expanduser().glob("*.y*ml"))
        problems = 0
        for path in files:
            try:
                contract = load_file(path)
            except ContractError as error:
                problems += 1
                click.echo(f"invalid  {error}")
            else:
                click.echo(f"ok       {path}: {contract.key}, {len(contract.examples)} examples")
        if problems:
            raise SystemExit(1)
        if not files:
            click.echo("no contract files found")

    @contracts.command("test")
    @click.argument("name")
    @click.option("--version", "version", default=None, help="the version to test")
    @click.option("--workers", default=None, help="force each of these workers in turn (a,b)")
    @click.option("--url", default=None, help="a running gateway (default: in-process)")
    @click.option("--key", envvar="PODIUM_API_KEY", default=None, help="API key for --url")
    @click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
    @config_option
    def test(
        name: str,
        version: str | None,
        workers: str | None,
        url: str | None,
        key: str | None,
        as_json: bool,
        config_path: str | None,
    ) -> None:
        """Run NAME's examples; report pass rate, cost and latency per worker."""
        config = _config(config_path)
        contract = _contract(_contracts(config, None), name, version)
        if not contract.examples:
            raise click.ClickException(f"contract {contract.key} has no examples")
        forced: list[str | None] = [w.strip() for w in workers.split(",")] if workers else [None]
        if url is not None and workers:
            raise click.ClickException("--workers needs the in-process gateway (no --url)")
        run, close = remote(url, key) if url else in_process(config)
        click.echo(
            f"testing {contract.key}: {len(contract.examples)} examples, evaluator "
            f"{contract.evaluator.kind}",
            err=True,
        )

        async def go() -> list[WorkerReport]:
            try:
                return await run_examples(
                    contract, forced, run, lambda line: click.echo(line, err=True)
                )
            finally:
                await close()

        reports = _run(go())
        if as_json:
            data = [
                {
                    "worker": r.worker,
                    "outcomes": [o.__dict__ for o in r.outcomes],
                    "row": dict(zip(REPORT_HEADER, r.row(), strict=True)),
                }
                for r in reports
            ]
            click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        else:
            click.echo(table(REPORT_HEADER, [r.row() for r in reports]))
        sys.stdout.flush()

    @contracts.command("promote")
    @click.argument("name")
    @click.argument("version")
    @config_option
    def promote(name: str, version: str, config_path: str | None) -> None:
        """Make VERSION of NAME current (live calls use it; it stops running in shadow)."""
        config = _config(config_path)
        found = _contracts(config, None)
        _contract(found, name, version)
        before = found.current_version(name)
        path = write_promotion(config.resolved_data_dir(), name, version)
        click.echo(f"{name}: {before} -> {version} (recorded in {path}; restart or reload)")
        try:
            rows = _with_store(config, lambda store: contract_stats(store, contract=name))
        except Exception as error:  # no store yet: nothing to compare
            click.echo(f"no statistics to compare ({type(error).__name__})")
            return
        if rows:
            click.echo(stats_rows(rows))

    @contracts.command("stats")
    @click.argument("name", required=False)
    @click.option("--since", type=float, default=0.0, help="epoch seconds")
    @config_option
    def stats(name: str | None, since: float, config_path: str | None) -> None:
        """Calls, evaluator pass rate, shadow agreement, cost and latency per version/worker."""
        config = _config(config_path)
        rows = _with_store(config, lambda store: contract_stats(store, contract=name, since=since))
        click.echo(stats_rows(rows) if rows else "no contract calls recorded")
