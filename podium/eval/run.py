"""One live evaluation from start to end: serve (or reach) a Podium, optionally train the
learned router from its own traces on the train split, ask every dev question through every
strategy, and write results.jsonl, results.json, report.md and quality_cost.png."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.eval import report
from podium.eval.live import (
    LiveClient,
    Record,
    ResultsLog,
    by_price,
    env_key,
    eval_config,
    link_models,
    log_examples,
    plan_jobs,
    run_jobs,
    strategies_for,
    train_router,
    write_config,
)
from podium.eval.scoring import Question, load_questions
from podium.routing.training import write_examples
from podium.workflow import parse_workflow_key

DEFAULT_CONFIG = Path("examples/pool.yaml")


@dataclass(slots=True)
class LiveOptions:
    tasks: list[Path]
    out: Path
    limit: int | None = None
    strategies: list[str] = field(
        default_factory=lambda: ["single", "router", "cascade", "workflow", "conductor", "moa"]
    )
    workers: list[str] | None = None
    url: str | None = None
    config: Path | None = None
    state_dir: Path | None = None
    concurrency: int = 2
    timeout: float = 300.0
    code_timeout: float = 10.0
    train_tasks: list[Path] = field(default_factory=list)
    train_limit: int | None = None
    train_workflows: list[str] = field(default_factory=list)  # program(a,b), ...
    train_workflow_limit: int | None = None  # train questions per file the workflows answer
    calibration: str = "match-best-worker"  # or within-best-worker-cost
    api_key_env: str | None = None
    admin_key_env: str | None = "PODIUM_ADMIN_KEY"
    command: str = ""
    notes: str = ""
    report_only: bool = False  # summarise results.jsonl without asking anything


def interleave(groups: Sequence[list[Question]]) -> list[Question]:
    """Round-robin over the task files, so a partial run covers every task."""
    found: list[Question] = []
    seen: set[str] = set()
    longest = max((len(g) for g in groups), default=0)
    for i in range(longest):
        for group in groups:
            if i < len(group) and group[i].qid not in seen:
                seen.add(group[i].qid)
                found.append(group[i])
    return found


def load_all(paths: Sequence[Path], limit: int | None) -> list[Question]:
    return interleave([load_questions(p, limit) for p in paths])


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the top level must be a mapping of settings")
    return data


def prepare_state(options: LiveOptions, source: Path) -> tuple[dict[str, Any], Path]:
    """The evaluation's config (written to its state folder) and where it was written."""
    base = _read_yaml(source)
    state = (options.state_dir or options.out / "state").resolve()
    # every workflow strategy gets its header rule, asked on train or on dev
    flows = [s for s in options.strategies if parse_workflow_key(s) is not None]
    config_data = eval_config(base, state, list(dict.fromkeys(options.train_workflows + flows)))
    link_models(Path(str(base.get("data_dir") or ".podium")).expanduser(), state)
    config_path = state / "eval-config.yaml"
    write_config(config_data, config_path)
    return config_data, config_path


@asynccontextmanager
async def gateway(options: LiveOptions) -> AsyncIterator[tuple[str, list[str], Path | None]]:
    """The URL to ask, the workers cheapest first, and the config path the router trains with."""
    if options.url is not None:
        workers = options.workers
        if workers is None and options.config is not None:
            workers = by_price(_read_yaml(options.config).get("workers") or [])
        yield options.url, workers or [], options.config
        return
    from podium.app import create_podium
    from podium.config import load_config
    from podium.testing.server import serve

    source = options.config or DEFAULT_CONFIG
    config_data, config_path = await asyncio.to_thread(prepare_state, options, source)
    config = load_config(config_path)
    podium = create_podium(config)
    print(f"podium eval live: starting the pool from {source} ...", file=sys.stderr, flush=True)
    async with serve(podium.app) as url:
        workers = options.workers or by_price(config_data["workers"])
        yield url, workers, config_path


async def evaluate(options: LiveOptions) -> dict[str, Any]:
    questions = load_all(options.tasks, options.limit)
    if options.report_only:
        return await asyncio.to_thread(report_only, questions, options)
    train_questions = (
        load_all(options.train_tasks, options.train_limit) if options.train_tasks else []
    )
    options.out.mkdir(parents=True, exist_ok=True)
    async with gateway(options) as (url, workers, config_path):
        client = LiveClient(
            url,
            api_key=env_key(options.api_key_env),
            admin_key=env_key(options.admin_key_env),
            timeout=options.timeout,
        )
        try:
            if not workers:
                workers = await client.workers()
            if train_questions:
                await feedback_loop(client, train_questions, workers, options, config_path)
            strategies = strategies_for(options.strategies, workers)
            log = ResultsLog(options.out / "results.jsonl")
            jobs = plan_jobs(questions, strategies, log.done)
            print(
                f"podium eval live: {len(questions)} questions x {len(strategies)} strategies; "
                f"{len(jobs)} to ask ({len(log.done)} already answered)",
                file=sys.stderr,
                flush=True,
            )
            await run_jobs(
                client,
                jobs,
                log,
                concurrency=options.concurrency,
                code_timeout=options.code_timeout,
            )
        finally:
            await client.aclose()
    wanted = {q.qid for q in questions}
    names = [s.name for s in strategies]
    records = [r for r in log.records if r.qid in wanted]
    return write_report(records, names, options)


async def feedback_loop(
    client: LiveClient,
    questions: list[Question],
    workers: list[str],
    options: LiveOptions,
    config_path: Path | None,
) -> None:
    """Every train question through every single worker (and every workflow of
    ``--train-workflow``), correctness posted as feedback against each trace; then the learned
    router is trained from those traces and reloaded.
    When the log already held some answers (asked by an earlier run, whose feedback may be
    in another store), the router trains from the whole log's examples instead: the same
    outcomes the feedback carried, without asking the workers again."""
    log = ResultsLog(options.out / "train.jsonl")
    singles = strategies_for([f"single:{w}" for w in workers], workers)
    flows = strategies_for(options.train_workflows, workers)
    strategies = singles + flows
    # the workflows may answer a sample (the first questions of each file), as a workflow
    # would be tried on a sample of real traffic; the workers answer every question
    limit = options.train_workflow_limit
    sampled = {
        q.qid for q in (questions if limit is None else load_all(options.train_tasks, limit))
    }
    asked = [(q, singles + flows if q.qid in sampled else singles) for q in questions]
    jobs = [job for question, those in asked for job in plan_jobs([question], those, log.done)]
    expected = sum(len(those) for _, those in asked)
    posted = 0

    async def post(record: Record) -> None:
        nonlocal posted
        if record.trace_id and record.error is None:
            stored = await client.feedback(record.trace_id, record.correct)
            posted += stored  # after the await: `posted += await ...` reads posted before it

    await run_jobs(
        client,
        jobs,
        log,
        concurrency=options.concurrency,
        code_timeout=options.code_timeout,
        label="train split (feedback)",
        on_record=post,
    )
    print(f"podium eval live: {posted} feedback signals posted", file=sys.stderr, flush=True)
    if config_path is None:
        raise ValueError("training the router needs --config: the gateway's configuration")
    examples = None
    if len(jobs) < expected:
        examples = (options.state_dir or options.out / "state") / "train-examples.jsonl"
        write_examples(examples, log_examples(log.records, questions))
        print(f"podium eval live: the router trains from {log.path.name}", file=sys.stderr)
    await asyncio.sleep(1.5)  # the trace recorder writes in batches
    output = await asyncio.to_thread(
        train_router, config_path, examples, calibration=options.calibration
    )
    print(output, file=sys.stderr, flush=True)
    response = await client.http.post("/admin/router/reload")
    print(
        f"podium eval live: router reload -> {response.status_code} {response.text[:200]}",
        file=sys.stderr,
        flush=True,
    )
    summary = report.summarise(log.records, [s.name for s in strategies])
    (options.out / "train.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")


def report_only(questions: list[Question], options: LiveOptions) -> dict[str, Any]:
    """The report of what results.jsonl holds, for these questions and strategies."""
    workers = options.workers
    if workers is None:
        workers = by_price(_read_yaml(options.config or DEFAULT_CONFIG).get("workers") or [])
    names = [s.name for s in strategies_for(options.strategies, workers)]
    wanted = {q.qid for q in questions}
    log = ResultsLog(options.out / "results.jsonl")
    return write_report([r for r in log.records if r.qid in wanted], names, options)


def write_report(
    records: list[Record], strategies: list[str], options: LiveOptions
) -> dict[str, Any]:
    result = report.summarise(records, strategies)
    result["command"] = options.command
    (options.out / "results.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    notes = options.notes
    try:
        report.plot(result, options.out / "quality_cost.png")
    except RuntimeError as error:
        notes += f"\n\n(no plot: {error})"
    (options.out / "report.md").write_text(
        report.markdown(result, command=options.command, notes=notes), encoding="utf-8"
    )
    return result
