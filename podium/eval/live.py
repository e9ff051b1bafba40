"""Live evaluation: real questions through a running Podium over its HTTP API, scored on gold.

Every (strategy, question) pair is one ``POST /v1/chat/completions`` made with the official
``openai`` client. A strategy is only a model name (and headers) the gateway understands:

- ``single:<worker>``: ``model: <worker>``, that worker alone;
- ``router``: ``model: podium/auto`` through the learned router;
- ``cascade``, ``workflow``, ``moa``: ``model: podium/cascade`` / ``podium/workflow`` /
  ``podium/moa``, which routing rules of the evaluation config send to the ``cascade``,
  ``solve_verify`` and ``fanout`` templates (the header ``x-podium-strategy`` selects them too);
- ``conductor``: ``model: podium/conductor``, the Conductor socket with the strongest worker
  as planner.

What each answer cost comes from the trace Podium recorded for it (every step of a workflow,
the Conductor's planning call included), read from ``GET /admin/stats/traces/{id}``; when the
trace cannot be read, the response's own usage stands in (and the record says so).

Results are appended to ``results.jsonl`` in the output folder as they arrive, so a killed run
resumes where it stopped: a pair already in the file is not asked again.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from podium.code_examples import answer_program
from podium.eval.sandbox import run_tests
from podium.eval.scoring import Question, Score, score_text
from podium.routing.training import TrainingExample
from podium.workflow import parse_workflow_key

STRATEGY_MODELS = {
    "router": "podium/auto",
    "cascade": "podium/cascade",
    "workflow": "podium/workflow",
    "moa": "podium/moa",
    "conductor": "podium/conductor",
}
ALL_STRATEGIES = ("single", "router", "cascade", "workflow", "conductor", "moa")
STRATEGY_HEADER = "x-podium-strategy"
TRACE_PATH = "/admin/stats/traces/{trace_id}"
MAX_ANSWER_CHARS = 2000


@dataclass(slots=True)
class Strategy:
    name: str  # single:<worker>, router, cascade, ...
    model: str
    headers: dict[str, str] = field(default_factory=dict)


def strategies_for(names: Sequence[str], workers: Sequence[str]) -> list[Strategy]:
    """``single`` expands to one strategy per worker; the others are virtual models."""
    found: list[Strategy] = []
    for name in names:
        if name == "single":
            found.extend(Strategy(f"single:{w}", w) for w in workers)
        elif name.startswith("single:"):
            found.append(Strategy(name, name.removeprefix("single:")))
        elif name in STRATEGY_MODELS:
            found.append(Strategy(name, STRATEGY_MODELS[name], {STRATEGY_HEADER: name}))
        elif parse_workflow_key(name) is not None:
            # one templated workflow, always (a header rule of the evaluation's config)
            found.append(Strategy(name, "podium/auto", {STRATEGY_HEADER: name}))
        else:
            known = ", ".join(ALL_STRATEGIES)
            raise ValueError(
                f"unknown strategy {name!r} (known: {known}, single:<worker>, template(worker,...))"
            )
    return found


@dataclass(slots=True)
class Record:
    """One answered (or failed) pair, as stored in results.jsonl."""

    strategy: str
    qid: str
    task: str
    kind: str
    correct: bool
    parsed: bool
    extracted: str | None = None
    detail: str | None = None  # why an answer scored 0 (unreadable, a failing test, killed)
    answer: str | None = None
    error: str | None = None  # transport/HTTP failure, timeout, or scoring failure
    latency_ms: float = 0.0
    trace_id: str | None = None
    route: str | None = None
    worker: str | None = None  # the worker whose answer the caller got
    step_workers: list[str] = field(default_factory=list)  # every call, in order
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    usage_source: str = "none"  # trace | response | none
    created_at: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ResultsLog:
    """Append-only JSONL of records; the keys already present are skipped on resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[Record] = []
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                    self.records.append(Record(**data))
                except (ValueError, TypeError):
                    continue  # a line cut short by a kill: that pair is asked again
        self.done = {(r.strategy, r.qid) for r in self.records}

    def add(self, record: Record) -> None:
        self.records.append(record)
        self.done.add((record.strategy, record.qid))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")


def messages_for(question: Question) -> list[dict[str, str]]:
    messages = []
    if question.system:
        messages.append({"role": "system", "content": question.system})
    messages.append({"role": "user", "content": question.prompt})
    return messages


async def score_answer(question: Question, text: str, code_timeout: float = 10.0) -> Score:
    if question.kind != "code":
        return score_text(question, text)
    assert question.entry_point is not None and question.code_prompt is not None
    if not text.strip():
        return Score(False, False, None, "empty answer")
    code = answer_program(text, question.code_prompt, question.entry_point)
    result = await run_tests(code, str(question.gold), question.entry_point, seconds=code_timeout)
    if result.timed_out:
        return Score(False, True, None, "timed out (killed)")
    return Score(result.passed, True, None, None if result.passed else result.output[-300:])


def apply_trace(record: Record, trace: dict[str, Any]) -> None:
    """Tokens, calls, cost and workers from the trace's steps (every call made)."""
    # "accept" marks a cascade's draft standing: no call was made for it
    steps = [
        s
        for s in trace.get("steps") or []
        if s.get("status") != "skipped" and s.get("role") != "accept"
    ]
    record.step_workers = [str(s.get("worker")) for s in steps]
    record.calls = len(steps)
    record.input_tokens = sum(int(s.get("input_tokens") or 0) for s in steps)
    record.output_tokens = sum(int(s.get("output_tokens") or 0) for s in steps)
    record.cost_usd = float(
        trace.get("cost_usd") or sum(float(s.get("cost_usd") or 0) for s in steps)
    )
    record.route = trace.get("route") or record.route
    record.worker = trace.get("worker") or record.worker
    record.usage_source = "trace"


class LiveClient:
    """The HTTP side: chat completions through the openai SDK, traces and feedback through
    httpx (the SDK's own transport library)."""

    def __init__(
        self, url: str, *, api_key: str | None, admin_key: str | None, timeout: float
    ) -> None:
        import httpx
        import openai

        self.url = url.rstrip("/")
        self.openai = openai.AsyncOpenAI(
            base_url=f"{self.url}/v1",
            api_key=api_key or "podium-eval",
            timeout=timeout,
            max_retries=0,
        )
        headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30.0, headers=headers)
        self.api_headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    async def aclose(self) -> None:
        await self.openai.close()
        await self.http.aclose()

    async def workers(self) -> list[str]:
        models = await self.openai.models.list()
        return [m.id for m in models.data if not m.id.startswith("podium/")]

    async def ask(self, strategy: Strategy, question: Question, record: Record) -> str:
        """The answer's text; fills the record's transport facts. Raises on failure."""
        import openai

        started = time.perf_counter()
        try:
            raw = await self.openai.chat.completions.with_raw_response.create(
                model=strategy.model,
                messages=messages_for(question),  # type: ignore[arg-type]
                max_tokens=question.max_tokens,
                temperature=0.0,
                extra_headers=strategy.headers or None,
            )
        except openai.APIStatusError as error:
            record.latency_ms = (time.perf_counter() - started) * 1000
            record.trace_id = error.response.headers.get("x-podium-trace-id")
            raise
        finally:
            record.latency_ms = (time.perf_counter() - started) * 1000
        headers = raw.headers
        record.trace_id = headers.get("x-podium-trace-id")
        record.worker = headers.get("x-podium-worker")
        record.route = headers.get("x-podium-route")
        completion = raw.parse()
        if completion.usage is not None:
            record.input_tokens = completion.usage.prompt_tokens
            record.output_tokens = completion.usage.completion_tokens
            record.calls = 1
            record.usage_source = "response"
        cost = headers.get("x-podium-cost-usd")
        if cost and cost != "pending":
            record.cost_usd = float(cost)
        text = completion.choices[0].message.content if completion.choices else None
        return text or ""

    async def trace(self, trace_id: str, wait: float = 6.0) -> dict[str, Any] | None:
        """The recorded trace (traces are written in batches: wait for it a little)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                response = await self.http.get(TRACE_PATH.format(trace_id=trace_id))
                if response.status_code == 200:
                    trace: dict[str, Any] = response.json()["trace"]
                    return trace
                if response.status_code != 404:
                    return None
            except Exception:
                return None
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.25)

    async def feedback(self, trace_id: str, correct: bool) -> bool:
        response = await self.http.post(
            "/v1/feedback",
            json={"trace_id": trace_id, "score": correct, "source": "eval", "name": "correct"},
            headers=self.api_headers,
        )
        return response.status_code == 201


@dataclass(slots=True)
class Job:
    strategy: Strategy
    question: Question


def plan_jobs(
    questions: Sequence[Question], strategies: Sequence[Strategy], done: set[tuple[str, str]]
) -> list[Job]:
    """Question-major order: one question through every strategy before the next, so a
    partial run covers every strategy on the same questions (and the workers' prompt caches
    see the same prompt several times in a row)."""
    return [Job(s, q) for q in questions for s in strategies if (s.name, q.qid) not in done]


class Progress:
    """A progress bar with an ETA on stderr (tqdm when installed; one line a minute when the
    output is a file, so logs stay readable)."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.count = 0
        self.correct = 0
        self.failed = 0
        self.started = time.monotonic()
        self.label = label
        self._last_line = 0.0
        self._bar: Any = None
        if sys.stderr.isatty():
            try:
                from tqdm import tqdm  # type: ignore[import-untyped]

                self._bar = tqdm(total=total, desc=label, unit="q", file=sys.stderr)
            except ImportError:
                self._bar = None

    def update(self, record: Record) -> None:
        self.count += 1
        self.correct += int(record.correct)
        self.failed += int(record.error is not None)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(acc=f"{self.correct / self.count:.2f}", failed=self.failed)
            return
        now = time.monotonic()
        if now - self._last_line >= 60 or self.count == self.total:
            self._last_line = now
            print(self.line(), file=sys.stderr, flush=True)

    def line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else float("nan")
        return (
            f"{self.label}: {self.count}/{self.total} "
            f"({self.count / max(1, self.total):.0%}) elapsed {elapsed / 60:.1f} min, "
            f"ETA {eta / 60:.1f} min; accuracy so far {self.correct / max(1, self.count):.2f}, "
            f"failures {self.failed}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


async def run_jobs(
    client: LiveClient,
    jobs: Sequence[Job],
    log: ResultsLog,
    *,
    concurrency: int = 2,
    code_timeout: float = 10.0,
    label: str = "live eval",
    on_record: Callable[[Record], Any] | None = None,
) -> None:
    """Ask every job; a failure of any kind is recorded for that pair and the run goes on."""
    queue: asyncio.Queue[Job] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)
    progress = Progress(len(jobs), label)
    pending: set[asyncio.Task[None]] = set()

    async def finish(job: Job, record: Record, text: str | None) -> None:
        if text is not None:
            try:
                score = await score_answer(job.question, text, code_timeout)
                record.correct, record.parsed = score.correct, score.parsed
                record.extracted = score.extracted
                record.detail = score.detail
            except Exception as error:  # a scorer bug must not stop the run
                record.error = f"scoring failed: {type(error).__name__}: {error}"
        if record.trace_id:
            trace = await client.trace(record.trace_id)
            if trace is not None:
                apply_trace(record, trace)
        record.created_at = time.time()
        log.add(record)
        progress.update(record)
        if on_record is not None:
            try:
                result = on_record(record)
                if asyncio.iscoroutine(result):
                    await result
            except Exception as error:
                print(f"feedback for {record.trace_id} failed: {error}", file=sys.stderr)

    async def runner() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            record = Record(
                job.strategy.name,
                job.question.qid,
                job.question.task,
                job.question.kind,
                False,
                False,
            )
            text: str | None = None
            try:
                text = await client.ask(job.strategy, job.question, record)
                record.answer = text[:MAX_ANSWER_CHARS]
            except Exception as error:
                record.error = describe_error(error)
            task = asyncio.get_running_loop().create_task(finish(job, record, text))
            pending.add(task)
            task.add_done_callback(pending.discard)

    try:
        await asyncio.gather(*(runner() for _ in range(max(1, concurrency))))
        while pending:
            await asyncio.gather(*list(pending))
    finally:
        progress.close()


def describe_error(error: BaseException) -> str:
    import openai

    if isinstance(error, openai.APITimeoutError):
        return "timeout: no answer within the client's time limit"
    if isinstance(error, openai.APIStatusError):
        try:
            message = error.response.json()["error"]["message"]
        except Exception:
            message = error.response.text[:200]
        if error.status_code == 504:  # Podium gave up at the client's deadline, or a worker's
            return f"timeout: {message}"
        return f"http {error.status_code}: {message}"
    if isinstance(error, openai.APIConnectionError):
        return f"connection failed: {error}"
    return f"{type(error).__name__}: {str(error)[:300]}"


# -- the gateway under test ------------------------------------------------------------------


def by_price(workers: Iterable[dict[str, Any]]) -> list[str]:
    """The names of the workers that answer (not those with ``role: check``), cheapest first
    (by input + output price)."""

    def price(worker: dict[str, Any]) -> float:
        p = worker.get("price") or {}
        return float(p.get("input") or 0) + float(p.get("output") or 0)

    answering = [w for w in workers if w.get("role", "answer") == "answer"]
    return [str(w["name"]) for w in sorted(answering, key=price)]


def strategy_routing(workers: Sequence[str]) -> dict[str, Any]:
    """The routing section that gives each strategy its virtual model (cheapest first in
    ``workers``): rules match the model name or the ``x-podium-strategy`` header."""
    strong = workers[-1]
    cheap = workers[-2] if len(workers) > 1 else workers[0]

    def rule(name: str, template: str, members: list[str], **options: Any) -> dict[str, Any]:
        target: dict[str, Any] = {"template": template, "workers": members}
        if options:
            target["options"] = options
        return {
            "name": f"strategy-{name}",
            "workflow": target,
            "match": {"model": [STRATEGY_MODELS[name]]},
        }

    rules = [
        rule("cascade", "cascade", [cheap, strong, cheap]),
        rule("workflow", "solve_verify", [cheap, strong]),
        rule("moa", "fanout", [*workers, strong])
        if len(workers) > 1
        else rule("moa", "fanout", [strong], k=3),
    ]
    header_rules = []
    for item in rules:
        name = item["name"].removeprefix("strategy-")
        header_rules.append(
            {
                "name": f"strategy-header-{name}",
                "workflow": item["workflow"],
                "match": {"model": ["podium/auto"], "headers": {STRATEGY_HEADER: f"^{name}$"}},
            }
        )
    return {
        "chain": ["rules", "conductor", "learned", "direct"],
        "rules": [*rules, *header_rules],
        "routers": {
            "learned": {"type": "learned", "models": ["podium/auto"]},
            "conductor": {
                "type": "conductor",
                "planner": strong,
                "fallback": "learned",
                "max_tokens": 128,
                "max_steps": 2,
                "max_instruction_chars": 24,
                "models": [STRATEGY_MODELS["conductor"]],
                "notes": {
                    w: "cheapest, weakest" if i == 0 else ("strongest" if w == strong else "mid")
                    for i, w in enumerate(workers)
                },
            },
        },
    }


def workflow_rules(keys: Sequence[str]) -> list[dict[str, Any]]:
    """A rule per workflow strategy (``program(a,b)``): its header runs that workflow."""
    rules = []
    for index, key in enumerate(keys):
        parsed = parse_workflow_key(key)
        if parsed is None:
            raise ValueError(f"{key!r} is not a workflow: write template(worker,...)")
        template, members = parsed
        rules.append(
            {
                "name": f"strategy-workflow-{index + 1}",
                "workflow": {"template": template, "workers": members},
                "match": {
                    "model": ["podium/auto"],
                    "headers": {STRATEGY_HEADER: f"^{re.escape(key)}$"},
                },
            }
        )
    return rules


def eval_config(
    base: dict[str, Any], state_dir: Path, workflows: Sequence[str] = ()
) -> dict[str, Any]:
    """The configuration the evaluation serves: the user's workers and settings, its own data
    directory (traces, feedback and router artifacts apart from production), content capture
    on (the learned router trains on prompts), and the strategy routing (``workflows``: the
    workflow strategies the train split asks too)."""
    config: dict[str, Any] = json.loads(json.dumps(base))  # a deep copy of plain YAML data
    workers = config.get("workers") or []
    if not workers:
        raise ValueError("the configuration has no workers to evaluate")
    names = by_price(workers)
    config["data_dir"] = str(state_dir)
    config.pop("store", None)
    observe = config.setdefault("observe", {})
    observe["capture_content"] = True
    routing = config.get("routing") or {}
    ours = strategy_routing(names)
    ours["rules"].extend(workflow_rules(workflows))
    ours["rules"].extend(routing.get("rules") or [])
    for name, section in (routing.get("routers") or {}).items():
        # the user's settings for a router win over the evaluation's defaults
        ours["routers"][name] = {**ours["routers"].get(name, {}), **(section or {})}
    for key in ("semantic", "affinity", "timeout_ms"):
        if key in routing:
            ours[key] = routing[key]
    ours["timeout_ms"] = max(float(ours.get("timeout_ms", 250)), 600_000.0)  # the planner is slow
    config["routing"] = ours
    return config


def link_models(source_data_dir: Path, state_dir: Path) -> None:
    """Reuse model files assembled under the source data directory (they are large)."""
    source = source_data_dir / "models"
    target = state_dir / "models"
    state_dir.mkdir(parents=True, exist_ok=True)
    if source.is_dir() and not target.exists():
        target.symlink_to(source.resolve(), target_is_directory=True)


def write_config(config: dict[str, Any], path: Path) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by `podium eval live`: the configuration the evaluation served.\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )


def log_examples(records: Sequence[Record], questions: Sequence[Question]) -> list[TrainingExample]:
    """The train log as the router's training examples: per answer, the prompt the gateway
    saw (its messages joined, as a trace captures it), the worker (or the workflow, for a
    workflow strategy), whether it was right, its cost and output tokens; what the traces and
    their feedback carried."""
    prompts = {q.qid: "\n".join(m["content"] for m in messages_for(q)) for q in questions}
    return [
        TrainingExample(
            trace_id=record.trace_id or f"{record.strategy}:{record.qid}",
            created_at=record.created_at,
            prompt=prompts[record.qid],
            worker=record.strategy if parse_workflow_key(record.strategy) else record.worker,
            quality=1.0 if record.correct else 0.0,
            cost_usd=record.cost_usd,
            output_tokens=record.output_tokens,
        )
        for record in records
        if record.qid in prompts and record.worker and record.error is None
    ]


CALIBRATIONS = ("match-best-worker", "within-best-worker-cost")


def train_router(
    config_path: Path,
    examples: Path | None = None,
    folds: int = 5,
    calibration: str = "match-best-worker",
) -> str:
    """``podium router train --from-traces --promote`` on the evaluation's store (or from
    ``examples`` instead), with cross-validated calibration rows, then ``podium router
    calibrate --match-best-worker --floor``: the cheapest lambda that loses nothing, on the
    train questions, against the best worker, and the largest floor that loses nothing more
    (``calibration="within-best-worker-cost"``: the best lambda that costs no more than
    that worker, and the largest floor that keeps its quality)."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {calibration!r} (known: {', '.join(CALIBRATIONS)})")
    import subprocess

    def podium(*args: str) -> str:
        command = [sys.executable, "-c", "from podium.cli import main; main()", *args]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise RuntimeError(f"router {args[1]} failed: {output}")
        return output

    config = ("--config", str(config_path))
    source = ("--examples", str(examples)) if examples is not None else ("--from-traces",)
    trained = podium(
        "router", "train", *source, "--calibration-folds", str(folds), "--promote", *config
    )
    return trained + "\n" + podium("router", "calibrate", f"--{calibration}", "--floor", *config)


def env_key(name: str | None) -> str | None:
    return os.environ.get(name) if name else None
