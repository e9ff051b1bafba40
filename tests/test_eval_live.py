"""``podium eval live`` against fake OpenAI upstreams: every strategy over real HTTP, usage from
the traces, resumable results, failures recorded, and the feedback loop that trains the router."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from podium.cli import main
from podium.eval.live import (
    Record,
    ResultsLog,
    by_price,
    eval_config,
    plan_jobs,
    strategies_for,
    workflow_rules,
)
from podium.eval.report import markdown, percentile, summarise, wilson
from podium.eval.run import LiveOptions, evaluate, interleave
from podium.eval.scoring import load_questions
from podium.routing.artifacts import ArtifactStore
from podium.routing.learned import QualityCostModel
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI

QUESTIONS = [
    {"query": f"Question: pick the second option ({i})", "choices": ["w", "x", "y"], "gold": 1}
    for i in range(3)
]
NUMERIC = [{"context": "What is 40 + 2?", "answer": "42"}]
EXTRA = [{"query": f"Question: more ({i})", "choices": ["w", "x"], "gold": 1} for i in range(5)]


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, FakeOpenAI]]:
    """cheap answers garbage, strong answers right (B / 42), mid answers A."""
    fakes = {
        "cheap": FakeOpenAI(Behaviour(reply="lorem ipsum dolor")),
        "mid": FakeOpenAI(Behaviour(reply="A")),
        "strong": FakeOpenAI(Behaviour(reply="B")),
    }
    for fake in fakes.values():
        await fake.start()
    try:
        yield fakes
    finally:
        for fake in fakes.values():
            await fake.stop()


def write_pool(tmp_path: Path, fakes: dict[str, FakeOpenAI], **extra: Any) -> Path:
    prices = {"cheap": (0.01, 0.03), "mid": (0.04, 0.12), "strong": (0.12, 0.36)}
    workers = [
        {
            "name": name,
            "provider": "openai",
            "model": f"{name}-model",
            "base_url": fake.base_url,
            "price": {"input": prices[name][0], "output": prices[name][1]},
            **extra.get(name, {}),
        }
        for name, fake in fakes.items()
    ]
    config = {"data_dir": str(tmp_path / "data"), "default_worker": "mid", "workers": workers}
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def write_tasks(tmp_path: Path, name: str, rows: list[dict[str, Any]], split: str = "dev") -> Path:
    folder = tmp_path / "tasks" / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{split}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def requests_made(fakes: dict[str, FakeOpenAI]) -> int:
    return sum(len(fake.received) for fake in fakes.values())


def test_strategies_expand_and_unknown_ones_are_refused() -> None:
    found = strategies_for(["single", "moa", "single:x"], ["a", "b"])
    assert [s.name for s in found] == ["single:a", "single:b", "moa", "single:x"]
    assert found[2].model == "podium/moa" and found[2].headers == {"x-podium-strategy": "moa"}
    with pytest.raises(ValueError, match="unknown strategy 'best'"):
        strategies_for(["best"], ["a"])


def test_eval_config_gives_each_strategy_a_rule_and_keeps_the_users_rules(tmp_path: Path) -> None:
    base = {
        "workers": [
            {"name": "big", "price": {"input": 1, "output": 2}},
            {"name": "small", "price": {"input": 0.1, "output": 0.2}},
        ],
        "routing": {
            "rules": [{"name": "mine", "worker": "small"}],
            "routers": {"learned": {"lam": 5000}},
        },
    }
    assert by_price(base["workers"]) == ["small", "big"]
    config = eval_config(base, tmp_path / "state")
    rules = {rule["name"]: rule for rule in config["routing"]["rules"]}
    assert rules["strategy-cascade"]["workflow"]["workers"] == ["small", "big", "small"]
    assert rules["strategy-moa"]["workflow"] == {
        "template": "fanout",
        "workers": ["small", "big", "big"],
    }
    assert rules["strategy-header-workflow"]["match"]["headers"] == {
        "x-podium-strategy": "^workflow$"
    }
    assert "mine" in rules
    assert config["routing"]["routers"]["conductor"]["planner"] == "big"
    assert config["routing"]["routers"]["learned"] == {
        "type": "learned",
        "models": ["podium/auto"],
        "lam": 5000,
    }
    assert config["observe"]["capture_content"] is True
    assert config["data_dir"] == str(tmp_path / "state")
    with pytest.raises(ValueError, match="no workers"):
        eval_config({}, tmp_path)


def test_wilson_interval_and_percentiles() -> None:
    low, high = wilson(8, 10)
    assert 0.49 < low < 0.5 and 0.94 < high < 0.95
    assert all(wilson(0, n)[0] == 0.0 and wilson(n, n)[1] == 1.0 for n in range(1, 300))
    assert wilson(0, 0) == (0.0, 1.0)
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 95) == 0.0


def test_summary_compares_strategies_on_the_questions_all_answered() -> None:
    def rec(strategy: str, qid: str, correct: bool, tokens: int, cost: float) -> Record:
        return Record(
            strategy,
            qid,
            "t",
            "mc",
            correct,
            True,
            input_tokens=tokens,
            cost_usd=cost,
            calls=1,
            step_workers=[strategy],
        )

    records = [
        rec("single:a", "q1", True, 10, 1.0),
        rec("single:a", "q2", False, 10, 1.0),
        rec("router", "q1", True, 10, 0.5),
        rec("router", "q2", False, 10, 0.5),
        rec("router", "q3", True, 10, 0.5),  # only the router answered q3: left out
        rec("moa", "q1", True, 60, 4.0),
        rec("moa", "q2", False, 60, 4.0),
    ]
    result = summarise(records, ["single:a", "router", "moa"])
    assert result["n_questions"] == 2
    assert result["strategies"]["router"]["accuracy"] == 0.5
    targets = result["targets"]
    assert targets["beats_best_single"]["met"] is True
    assert targets["beats_best_single"]["by"] == ["router"]
    assert targets["beats_best_single"]["as_decided"]["router"]["accuracy"] == 0.5
    assert targets["five_x_fewer_tokens_than_moa"]["met"] is True
    assert targets["five_x_fewer_tokens_than_moa"]["token_ratio"]["router"] == 6.0


def test_a_router_that_always_picks_the_best_worker_does_not_beat_it() -> None:
    def rec(strategy: str, qid: str, correct: bool) -> Record:
        worker = "a" if strategy in ("single:a", "router") else "b"
        return Record(
            strategy, qid, "t", "mc", correct, True, cost_usd=1.0, calls=1, step_workers=[worker]
        )

    records = [
        rec("single:a", "q1", True),
        rec("single:a", "q2", False),  # the same worker, asked again, gets q2 right
        rec("router", "q1", True),
        rec("router", "q2", True),
        rec("single:b", "q1", False),
        rec("single:b", "q2", False),
    ]
    result = summarise(records, ["single:a", "single:b", "router"])
    assert result["strategies"]["router"]["accuracy"] == 1.0
    assert result["targets"]["beats_best_single"]["met"] is False
    assert result["targets"]["beats_best_single"]["same_worker"] == ["router"]
    text = markdown(result, command="podium eval live")
    assert "**not met** (router sent every call to that worker" in text


def test_a_router_is_judged_by_what_its_decisions_changed() -> None:
    def rec(strategy: str, qid: str, correct: bool, worker: str) -> Record:
        cost = {"strong": 10e-6, "cheap": 1e-6}[worker]
        return Record(
            strategy, qid, "t", "mc", correct, True, cost_usd=cost, calls=1, step_workers=[worker]
        )

    strong_right = {"q0", "q1", "q3"}
    records = [
        *(rec("single:strong", f"q{i}", f"q{i}" in strong_right, "strong") for i in range(4)),
        *(rec("single:cheap", f"q{i}", False, "cheap") for i in range(4)),
        # q0-q2 to the strong worker, which, asked again, also gets q2 right: noise, not a
        # decision; q3 to the cheap worker, which gets wrong what the strong one got right
        rec("router", "q0", True, "strong"),
        rec("router", "q1", True, "strong"),
        rec("router", "q2", True, "strong"),
        rec("router", "q3", False, "cheap"),
    ]
    result = summarise(records, ["single:cheap", "single:strong", "router"])
    # as asked, level with the strong worker for less, which would pass
    assert result["strategies"]["router"]["accuracy"] == 0.75
    beats = result["targets"]["beats_best_single"]
    assert beats["as_decided"]["router"] == {
        "accuracy": 0.5,
        "cost_per_question": pytest.approx(7.75e-6),
        "answered_by_best_alone": 3,
    }
    assert beats["met"] is False
    text = markdown(result)
    assert "router as decided: 0.500 at 7.75e-6 USD/question (0.750 as asked)" in text
    assert "On the 3 questions it gave to strong alone" in text

    records[3] = rec("single:strong", "q3", False, "strong")  # q3 was lost anyway
    result = summarise(records, ["single:cheap", "single:strong", "router"])
    assert result["targets"]["beats_best_single"]["met"] is True  # 0.5 for less


def test_results_log_resumes_and_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    log = ResultsLog(path)
    log.add(Record("router", "q1", "t", "mc", True, True))
    with path.open("a") as handle:
        handle.write('{"strategy": "router", "qid": "q2", "ta')  # killed mid-write
    again = ResultsLog(path)
    assert again.done == {("router", "q1")}
    questions = interleave([load_questions(write_tasks(tmp_path, "t", QUESTIONS))])
    jobs = plan_jobs(
        questions, strategies_for(["router", "moa"], ["a"]), {("router", questions[0].qid)}
    )
    assert [(j.strategy.name, j.question.qid) for j in jobs][:2] == [
        ("moa", questions[0].qid),
        ("router", questions[1].qid),
    ]


async def test_every_strategy_over_http_with_usage_from_traces_and_resume(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI]
) -> None:
    pool = write_pool(tmp_path, upstreams)
    options = LiveOptions(
        tasks=[write_tasks(tmp_path, "choice", QUESTIONS), write_tasks(tmp_path, "sums", NUMERIC)],
        out=tmp_path / "out",
        config=pool,
        concurrency=2,
        command="podium eval live ...",
    )
    result = await evaluate(options)
    names = [
        "single:cheap",
        "single:mid",
        "single:strong",
        "router",
        "cascade",
        "workflow",
        "conductor",
        "moa",
    ]
    assert list(result["strategies"]) == names
    assert result["n_questions"] == 4
    s = result["strategies"]
    assert s["single:strong"]["accuracy"] == 0.75  # "B" is right for 3 of 4 (not for 42)
    assert s["single:cheap"]["accuracy"] == 0.0 and s["single:cheap"]["unparsed"] == 4
    stored = [json.loads(x) for x in (options.out / "results.jsonl").read_text().splitlines()]
    cheap = [r for r in stored if r["strategy"] == "single:cheap" and r["task"] == "choice"]
    assert {r["detail"] for r in cheap} == {"no choice could be read"}
    assert s["single:mid"]["accuracy"] == 0.0
    # MoA: cheap, mid and strong propose, strong synthesises: four calls, read from the trace
    assert s["moa"]["calls_per_question"] == 4
    assert s["moa"]["worker_calls"] == {"strong": 0.5, "cheap": 0.25, "mid": 0.25}
    assert s["moa"]["tokens_per_question"] > s["single:strong"]["tokens_per_question"]
    assert s["workflow"]["calls_per_question"] == 2  # solve (mid) then verify (strong)
    assert s["workflow"]["accuracy"] == 0.75
    assert s["conductor"]["calls_per_question"] >= 2  # its planning call is counted
    for summary in s.values():
        assert summary["usage_from_traces"] == 4 and summary["failures"] == 0
        assert summary["cost_per_question"] > 0
    out = options.out
    assert (out / "results.json").exists() and (out / "quality_cost.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "| moa |" in report and "podium eval live ..." in report and "## Targets" in report
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 * len(names)
    # a re-run asks nothing again
    before = requests_made(upstreams)
    again = await evaluate(options)
    assert requests_made(upstreams) == before
    assert len((out / "results.jsonl").read_text().splitlines()) == len(lines)
    assert again["strategies"]["moa"] == s["moa"]
    # and the report alone, from results.jsonl, without a gateway
    only = await evaluate(replace(options, report_only=True))
    assert only["strategies"] == again["strategies"]


async def test_a_worker_that_fails_times_out_or_talks_nonsense_is_recorded(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI]
) -> None:
    upstreams["mid"].behaviour.latency = 3.0  # slower than the client waits
    upstreams["cheap"].behaviour.fail(400, "scripted refusal", times=100)
    pool = write_pool(tmp_path, upstreams)
    options = LiveOptions(
        tasks=[write_tasks(tmp_path, "choice", QUESTIONS[:2])],
        out=tmp_path / "out",
        config=pool,
        strategies=["single"],
        timeout=1.0,
    )
    result = await evaluate(options)
    s = result["strategies"]
    assert s["single:mid"]["failures"] == 2 and s["single:mid"]["accuracy"] == 0.0
    assert s["single:cheap"]["failures"] == 2
    assert s["single:strong"]["accuracy"] == 1.0 and s["single:strong"]["failures"] == 0
    records = [
        json.loads(line) for line in (options.out / "results.jsonl").read_text().splitlines()
    ]
    errors = {r["strategy"]: r["error"] for r in records}
    assert errors["single:mid"].startswith("timeout")
    assert errors["single:cheap"].startswith("http 4")
    details = {r["strategy"]: r["detail"] for r in records}
    assert details["single:strong"] is None


async def test_feedback_loop_trains_the_router_from_traces(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI]
) -> None:
    pool = write_pool(tmp_path, upstreams)
    train = write_tasks(tmp_path, "choice", QUESTIONS * 1, split="train")
    extra = [{"query": f"Question: more ({i})", "choices": ["w", "x"], "gold": 1} for i in range(5)]
    train.write_text(train.read_text() + "".join(json.dumps(r) + "\n" for r in extra))
    options = LiveOptions(
        tasks=[write_tasks(tmp_path, "choice", QUESTIONS)],
        out=tmp_path / "out",
        config=pool,
        strategies=["router"],
        train_tasks=[train],
    )
    result = await evaluate(options)
    train_log = [json.loads(x) for x in (options.out / "train.jsonl").read_text().splitlines()]
    assert len(train_log) == 8 * 3 and all(r["trace_id"] for r in train_log)
    state = options.out / "state"
    assert list((state / "routers").glob("*.npz")), "a router version was written"
    # its lambda was chosen on the train traces to match the best worker there
    calibrated = router_in_service(options).policy.calibrated
    assert calibrated["best_worker"] == "strong" and calibrated["target_quality"] == 1.0
    assert calibrated["rows"] == 8  # every train question, predicted by a model without it
    summary = json.loads((options.out / "train.json").read_text())
    assert summary["strategies"]["single:strong"]["accuracy"] == 1.0
    # the trained router serves podium/auto on dev
    router = result["strategies"]["router"]
    assert router["n"] == 3
    records = [json.loads(x) for x in (options.out / "results.jsonl").read_text().splitlines()]
    assert all(r["route"].startswith("learned") for r in records), records


def routed_after_training(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI], **overrides: Any
) -> LiveOptions:
    """The router asked three dev questions after a feedback loop over eight train ones."""
    options = LiveOptions(
        tasks=[write_tasks(tmp_path, "choice", QUESTIONS)],
        out=tmp_path / "out",
        config=write_pool(tmp_path, upstreams),
        strategies=["router"],
        train_tasks=[write_tasks(tmp_path, "choice", QUESTIONS + EXTRA, split="train")],
    )
    return replace(options, **overrides)


def router_in_service(options: LiveOptions) -> QualityCostModel:
    """The learned-router version the evaluation's state promoted."""
    routers = ArtifactStore(options.out / "state" / "routers")
    current = routers.current()
    assert current is not None
    return routers.load(current)


async def test_a_train_workflow_is_asked_and_learned_beside_the_workers(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI]
) -> None:
    options = routed_after_training(
        tmp_path,
        upstreams,
        train_workflows=["plan_solve(cheap,strong)"],
        train_workflow_limit=5,  # measured on a sample: the workers answer all eight
    )
    await evaluate(options)
    train_log = [json.loads(x) for x in (options.out / "train.jsonl").read_text().splitlines()]
    asked = [r for r in train_log if r["strategy"] == "plan_solve(cheap,strong)"]
    assert len(asked) == 5 and all(r["correct"] for r in asked)  # the strong worker solves
    assert len(train_log) == 8 * 3 + 5
    assert all(r["step_workers"] == ["cheap", "strong"] for r in asked)
    model = router_in_service(options)
    assert "plan_solve(cheap,strong)" in model.models  # learned from its traces' feedback
    # as right as the strong worker, but a workflow is no worker for the router to match
    assert model.policy.calibrated["best_worker"] == "strong"


async def test_a_workflow_can_be_asked_on_dev_as_a_strategy(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI]
) -> None:
    options = LiveOptions(
        tasks=[write_tasks(tmp_path, "choice", QUESTIONS)],
        out=tmp_path / "out",
        config=write_pool(tmp_path, upstreams),
        strategies=["plan_solve(cheap,strong)"],
    )
    result = await evaluate(options)
    records = [json.loads(x) for x in (options.out / "results.jsonl").read_text().splitlines()]
    assert [r["step_workers"] for r in records] == [["cheap", "strong"]] * 3
    assert result["strategies"]["plan_solve(cheap,strong)"]["accuracy"] == 1.0


def test_a_workflow_strategy_is_one_header_rule() -> None:
    (found,) = strategies_for(["program(a,run)"], ["a"])
    assert (found.model, found.headers) == ("podium/auto", {"x-podium-strategy": "program(a,run)"})
    (rule,) = workflow_rules(["program(a,run)"])
    assert rule["workflow"] == {"template": "program", "workers": ["a", "run"]}
    assert rule["match"]["headers"] == {"x-podium-strategy": r"^program\(a,run\)$"}
    with pytest.raises(ValueError, match="template\\(worker"):
        workflow_rules(["program"])


async def test_a_fresh_state_trains_the_router_from_the_train_log_without_asking_again(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI]
) -> None:
    options = routed_after_training(tmp_path, upstreams)
    await evaluate(options)
    first = ArtifactStore(options.out / "state" / "routers")
    trained_on_traces = first.load(first.versions()[-1])
    shutil.rmtree(options.out / "state")  # the traces and feedback are gone with it
    (options.out / "results.jsonl").unlink()
    asked = requests_made(upstreams)
    result = await evaluate(options)
    assert requests_made(upstreams) == asked + 3  # the three dev questions, no train question
    model = router_in_service(options)
    assert model.metadata["sources"] == ["train-examples.jsonl"]
    # the same rows and outcomes as the traces gave, so the same calibration
    assert model.policy.calibrated == trained_on_traces.policy.calibrated
    assert "floor_rows" in model.policy.calibrated
    assert np.array_equal(
        np.sort(model.calibration["true_quality"], axis=0),
        np.sort(trained_on_traces.calibration["true_quality"], axis=0),
    )
    assert result["strategies"]["router"]["n"] == 3


async def test_a_raised_train_limit_asks_only_the_new_questions_and_trains_on_all(
    tmp_path: Path, upstreams: dict[str, FakeOpenAI], capsys: pytest.CaptureFixture[str]
) -> None:
    options = routed_after_training(tmp_path, upstreams, train_limit=5, concurrency=2)
    await evaluate(options)
    assert "15 feedback signals posted" in capsys.readouterr().err  # 5 questions x 3 workers
    (options.out / "results.jsonl").unlink()
    asked = requests_made(upstreams)
    await evaluate(replace(options, train_limit=8))
    assert requests_made(upstreams) == asked + 3 * 3 + 3  # the new train questions, then dev
    assert "9 feedback signals posted" in capsys.readouterr().err
    model = router_in_service(options)
    # the earlier run's answers count too: the router learns from the whole train log
    assert model.metadata["sources"] == ["train-examples.jsonl"]
    assert model.policy.calibrated["rows"] == 8


def test_the_command_is_registered_beside_offline(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["eval", "--help"])
    assert "live" in result.output and "offline" in result.output
    tasks = write_tasks(tmp_path, "choice", QUESTIONS)
    bad = runner.invoke(main, ["eval", "live", "--tasks", str(tasks), "--strategies", "best"])
    assert bad.exit_code == 2 and "unknown strategy" in bad.output


def test_a_rewritten_report_names_the_command_that_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = str(write_tasks(tmp_path, "choice", QUESTIONS))
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text(
        "".join(
            json.dumps(
                {
                    "strategy": "single:a",
                    "qid": q.qid,
                    "task": q.task,
                    "kind": q.kind,
                    "correct": True,
                    "parsed": True,
                }
            )
            + "\n"
            for q in load_questions(Path(tasks))
        )
    )
    args = ["eval", "live", "--tasks", tasks, "--strategies", "single:a", "--workers", "a"]
    args += ["--out", str(out), "--report-only"]
    monkeypatch.setattr("sys.argv", ["podium", *args])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    assert f"--workers a --out {out}\n" in report and "--report-only" not in report


def test_the_conductor_plan_can_be_bounded_for_slow_planners() -> None:
    from podium.routing.conductor import ConductorConfig, plan_schema

    config = ConductorConfig(max_steps=2, max_instruction_chars=24)
    schema = plan_schema(["a", "b"], config.max_steps, config.max_instruction_chars)
    steps = schema["properties"]["steps"]
    assert steps["maxItems"] == 2
    assert steps["items"]["properties"]["instruction"] == {"type": "string", "maxLength": 24}
    unbounded = plan_schema(["a"])
    assert unbounded["properties"]["steps"]["maxItems"] == 5
    assert unbounded["properties"]["steps"]["items"]["properties"]["instruction"] == {
        "type": "string"
    }
