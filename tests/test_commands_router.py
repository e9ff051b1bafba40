"""``podium router train|calibrate|versions|promote|rollback|shadow`` and training from traces
with quality signals."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import orjson
import pytest
import yaml
from click.testing import CliRunner

from podium.cli import main
from podium.routing.artifacts import ArtifactStore
from podium.routing.training import examples_to_data, iter_training_examples
from podium.store.sqlite import SQLiteStore
from podium.store.traces import TraceRecord
from tests.learned_helpers import easy_prompt, hard_prompt, served_trace, write_csv


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    workers = [
        {"name": n, "provider": "openai", "model": n, "base_url": "http://127.0.0.1:9"}
        for n in ("cheap", "strong")
    ]
    path = tmp_path / "podium.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "workers": workers}))
    return path


async def seed_traces(db: Path, count: int, *, feedback: bool = True) -> list[TraceRecord]:
    store = SQLiteStore(db)
    await store.open()
    now = time.time()
    records = []
    for i in range(count):
        hard = i % 2 == 1
        worker = "cheap" if i % 4 < 2 else "strong"
        prompt = hard_prompt(i) if hard else easy_prompt(i)
        records.append(served_trace(prompt, worker, now - 3600 + i))
    await store.write_traces(records)
    if feedback:
        for record in records[:-2]:  # the last two have no signal: they must be skipped
            hard = "step by step" in (record.prompt or "")
            good = record.worker == "strong" or not hard
            await store.execute(
                "INSERT INTO feedback (feedback_id, trace_id, created_at, name, source, kind, "
                "value, label, score) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    uuid.uuid4().hex,
                    record.trace_id,
                    time.time(),
                    "thumbs",
                    "app",
                    "boolean",
                    1.0 if good else 0.0,
                    None,
                    1.0 if good else 0.0,
                ),
            )
    await store.close()
    return records


def test_train_calibrate_promote_and_roll_back_from_csv(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", rows=200)
    out = str(tmp_path / "routers")
    first = run("router", "train", "--data", str(data), "--out", out)
    assert "wrote learned-v1" in first and "brier" in first
    run("router", "train", "--data", str(data), "--out", out, "--promote")
    listing = run("router", "versions", "--out", out)
    assert "learned-v1" in listing and "* learned-v2" in listing
    calibrated = run("router", "calibrate", "--target-quality", "0.8", "--out", out)
    assert "learned-v2: lambda=" in calibrated and "goal met" in calibrated
    store = ArtifactStore(Path(out))
    policy = store.load(store.get(2)).policy
    assert policy.calibrated["target_quality"] == 0.8 and policy.calibrated["met"]
    capped = run(
        "router", "calibrate", "--max-cost-per-request", "0.002", "--version", "1", "--out", out
    )
    assert "learned-v1" in capped
    assert store.load(store.get(1)).policy.calibrated["expected_cost"] <= 0.002
    assert "promoted learned-v1" in run("router", "promote", "v1", "--out", out)
    assert "rolled back to learned-v2" in run("router", "rollback", "--out", out)
    assert store.current() is not None and store.current().number == 2  # type: ignore[union-attr]
    bad = CliRunner().invoke(main, ["router", "promote", "9", "--out", out])
    assert bad.exit_code != 0 and "no learned-router version 9" in bad.output


def test_cross_validated_calibration_matches_the_best_worker_for_less(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", rows=200)
    out = str(tmp_path / "routers")
    run("router", "train", "--data", str(data), "--calibration-folds", "5", "--out", out)
    calibrated = run("router", "calibrate", "--match-best-worker", "--out", out)
    assert "goal met (the best worker, strong:" in calibrated
    store = ArtifactStore(Path(out))
    model = store.load(store.get(1))
    assert model.metadata["calibration_rows"] == 200  # every row, each by a model without it
    info = model.policy.calibrated
    strong = model.models.index("strong")
    always_strong_cost = float(model.calibration["true_cost"][:, strong].mean())
    assert info["expected_quality"] >= info["target_quality"]
    assert info["expected_cost"] < 0.75 * always_strong_cost  # easy ones go to the cheap model
    assert model.policy.lam > 0
    # or the best quality for no more than always asking the strong worker
    within = run("router", "calibrate", "--within-best-worker-cost", "--out", out)
    assert "goal met (within the best worker's cost, strong:" in within
    info = store.load(store.get(1)).policy.calibrated
    assert info["max_cost_per_request"] == pytest.approx(always_strong_cost)
    assert info["expected_cost"] <= always_strong_cost
    assert info["expected_quality"] >= info["best_worker_quality"]


def write_examples(path: Path, rows: int) -> Path:
    """Examples as `podium eval live` writes them: easy questions both workers get right, hard
    ones only the strong worker gets right, and riddles nobody gets right."""
    lines = []
    for i in range(rows):
        kind = ("easy", "hard", "riddle")[i % 3]
        prompt = {
            "easy": easy_prompt(i),
            "hard": hard_prompt(i),
            "riddle": f"Riddle {i}: which unnamed sailor wrote the lost logbook, and when?",
        }[kind]
        for worker, price in (("cheap", 0.00001), ("strong", 0.001)):
            right = kind == "easy" or (kind == "hard" and worker == "strong")
            lines.append(
                {
                    "prompt": prompt,
                    "worker": worker,
                    "quality": 1.0 if right else 0.0,
                    "cost_usd": price,
                    "output_tokens": 12,
                }
            )
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def test_examples_train_and_a_floor_sends_hopeless_questions_cheap(tmp_path: Path) -> None:
    examples = write_examples(tmp_path / "train-examples.jsonl", rows=150)
    out = str(tmp_path / "routers")
    trained = run(
        "router", "train", "--examples", str(examples), "--calibration-folds", "5", "--out", out
    )
    assert "training on 150 rows x 2 models" in trained
    calibrated = run("router", "calibrate", "--match-best-worker", "--floor", "--out", out)
    assert "floor=" in calibrated and "rows to the cheapest worker" in calibrated
    assert "goal met" in calibrated
    store = ArtifactStore(Path(out))
    model = store.load(store.get(1))
    assert model.output_tokens.tolist() == [12.0, 12.0]  # the examples' own output tokens
    policy = model.policy
    assert policy.floor > 0 and policy.calibrated["floor_rows"] >= 40  # most of the 50 riddles
    assert policy.calibrated["expected_quality"] >= policy.calibrated["target_quality"]
    assert f"floor={policy.floor:.3f}" in run("router", "versions", "--out", out)


def test_a_file_that_is_not_examples_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "worker": "cheap", "quality": 1}\n{"prompt": "no worker"}\n')
    result = CliRunner().invoke(
        main, ["router", "train", "--examples", str(bad), "--out", str(tmp_path / "r")]
    )
    assert result.exit_code != 0
    assert "bad.jsonl:2: not a training example" in result.output


def test_bad_arguments_are_refused_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["router", "train", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--data" in result.output
    result = CliRunner().invoke(
        main,
        [
            "router",
            "calibrate",
            "--target-quality",
            "0.5",
            "--max-cost-per-request",
            "1",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0 and "exactly one" in result.output
    both = CliRunner().invoke(
        main,
        ["router", "calibrate", "--match-best-worker", "--target-quality", "0.5", "--out", "x"],
    )
    assert both.exit_code != 0 and "exactly one" in both.output


async def test_traces_of_one_prompt_on_several_workers_share_a_row(tmp_path: Path) -> None:
    db = tmp_path / "podium.db"
    records = await seed_traces(db, 8)
    store = SQLiteStore(db)
    await store.open()
    try:
        examples = [e async for e in iter_training_examples(store)]
    finally:
        await store.close()
    asked_twice = examples[0].prompt
    examples += [
        replace(examples[0], worker="strong", quality=1.0, trace_id="b"),
        replace(examples[0], worker="strong", quality=0.0, trace_id="c"),
    ]
    data, _ = examples_to_data(examples)
    assert len(data) == len(records) - 2  # one row per distinct prompt
    row = data.prompts.index(asked_twice)
    cells = dict(zip(data.models, data.quality[row], strict=True))
    assert cells == {"cheap": examples[0].quality, "strong": 0.5}  # repeats are averaged
    assert np.isnan(data.quality[data.prompts.index(examples[1].prompt)]).sum() == 1


async def test_traces_with_quality_signals_become_training_examples(tmp_path: Path) -> None:
    db = tmp_path / "podium.db"
    records = await seed_traces(db, 24)
    store = SQLiteStore(db)
    await store.open()
    try:
        examples = [e async for e in iter_training_examples(store)]
        recent = [e async for e in iter_training_examples(store, records[10].created_at)]
    finally:
        await store.close()
    assert len(examples) == 22  # two traces have no signal
    assert {e.worker for e in examples} == {"cheap", "strong"}
    assert all(0.0 <= e.quality <= 1.0 for e in examples)
    assert len(recent) == 22 - 11


async def test_answers_from_the_response_cache_are_not_examples(tmp_path: Path) -> None:
    db = tmp_path / "podium.db"
    records = await seed_traces(db, 6)
    store = SQLiteStore(db)
    await store.open()
    try:
        cached = orjson.dumps([{"worker": "cheap", "status": "ok", "role": "cache"}]).decode()
        await store.execute(
            "UPDATE traces SET steps = ?, cost_usd = 0 WHERE trace_id = ?",
            (cached, records[0].trace_id),
        )
        examples = [e async for e in iter_training_examples(store)]
    finally:
        await store.close()
    assert records[0].trace_id not in {e.trace_id for e in examples}
    assert len(examples) == 6 - 2 - 1


async def test_a_templated_workflow_is_learned_as_one_choice_at_its_whole_cost(
    tmp_path: Path,
) -> None:
    db = tmp_path / "podium.db"
    records = await seed_traces(db, 6)
    steps = [
        {"step": 0, "role": "write", "worker": "cheap", "status": "ok", "cost_usd": 0.00001},
        {"step": 1, "role": "run", "worker": "python", "status": "ok", "cost_usd": 0.0},
        {"step": 2, "role": "escalate", "worker": "strong", "status": "ok", "cost_usd": 0.001},
    ]
    store = SQLiteStore(db)
    await store.open()
    try:
        await store.execute(
            "UPDATE traces SET steps = ?, cost_usd = ?, workers = ?, workflow = ? "
            "WHERE trace_id = ?",
            (
                orjson.dumps(steps).decode(),
                0.00101,
                "cheap,python,strong",
                "program(cheap,python,strong)",
                records[0].trace_id,
            ),
        )
        learned = [e async for e in iter_training_examples(store)]
        workers_only = [e async for e in iter_training_examples(store, workflows=False)]
    finally:
        await store.close()
    by_trace = {e.trace_id: e for e in learned}
    workflow = by_trace[records[0].trace_id]
    assert workflow.worker == "program(cheap,python,strong)"
    assert workflow.cost_usd == pytest.approx(0.00101)  # every step's cost, not one worker's
    # without workflows, a trace several workers answered teaches nothing about one of them
    assert records[0].trace_id not in {e.trace_id for e in workers_only}
    assert len(workers_only) == len(learned) - 1


def test_train_from_traces_then_shadow_on_live_traffic(config_file: Path) -> None:
    config = yaml.safe_load(config_file.read_text())
    db = Path(config["data_dir"]) / "podium.db"
    asyncio.run(seed_traces(db, 80))
    trained = run("router", "train", "--from-traces", "--since", "7d", "--config", str(config_file))
    assert "78 traces with quality signals" in trained and "wrote learned-v1" in trained
    report = json.loads(run("router", "shadow", "--config", str(config_file), "--json"))
    assert report["candidate"] == "learned-v1"
    assert report["scored"] == 80
    assert 0 <= report["agree"] <= 80
    assert set(report["served"]) == {"quality", "cost", "actual_cost"}
    text = run("router", "shadow", "--config", str(config_file))
    assert "same worker as served" in text
    nothing = run(
        "router",
        "train",
        "--from-traces",
        "--since",
        "1s",
        "--config",
        str(config_file),
        "--data",
        str(write_csv(config_file.parent / "d.csv", rows=40)),
    )
    assert "0 traces with quality signals" in nothing
