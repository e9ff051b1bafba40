"""``podium traces ls|show|export`` read the configured store offline."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.observe.feedback import INSERT, make_signal
from podium.store.sqlite import SQLiteStore
from podium.store.traces import TraceRecord


def trace(trace_id: str, created_at: float, worker: str, **extra: object) -> TraceRecord:
    record = TraceRecord(
        trace_id=trace_id,
        created_at=created_at,
        ingress="openai",
        caller="key-app",
        owner="team-a",
        requested_model="podium/auto",
        route="rules:short",
        status="ok",
        http_status=200,
        router="rules",
        rule="short",
        reason="short prompt goes to the small worker",
        worker=worker,
        workers=worker,
        input_tokens=120,
        output_tokens=30,
        cost_usd=0.00042,
        latency_ms=812.0,
        steps=[
            {
                "step": 0,
                "role": "answer",
                "worker": worker,
                "status": "ok",
                "latency_ms": 800.0,
                "input_tokens": 120,
                "output_tokens": 30,
                "cost_usd": 0.00042,
            },
        ],
        candidates=[{"worker": worker, "score": 0.91}, {"worker": "big", "score": 0.4}],
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    now = time.time()

    async def fill() -> None:
        store = SQLiteStore(data / "podium.db")
        await store.open()
        await store.write_traces(
            [
                trace("t-old", now - 3 * 86400, "small"),
                trace("t-new", now - 60, "small", contract="summarise"),
                trace("t-err", now - 30, "big", status="error", http_status=502, error="boom"),
            ]
        )
        signal = make_signal("t-new", "thumbs", True, source="human", comment="spot on")
        await store.execute(INSERT, signal.row())
        await store.close()

    asyncio.run(fill())
    path = tmp_path / "podium.yaml"
    path.write_text(f"data_dir: {data}\n", encoding="utf-8")
    return path


def run(config: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["traces", "--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_ls_is_a_table_newest_first(config_file: Path) -> None:
    lines = run(config_file, "ls").splitlines()
    assert lines[0].split()[:5] == ["trace", "time", "caller", "route", "worker"]
    assert [line.split()[0] for line in lines[2:]] == ["t-err", "t-new", "t-old"]
    assert "error 502" in lines[2]


def test_ls_filters(config_file: Path) -> None:
    out = run(config_file, "ls", "--since", "1d", "--worker", "small")
    assert "t-new" in out and "t-old" not in out and "t-err" not in out


def test_show_prints_decision_steps_and_signals(config_file: Path) -> None:
    out = run(config_file, "show", "t-new")
    assert "short prompt goes to the small worker" in out
    assert "Decision: candidates" in out and "small *" in out
    assert "Workflow steps" in out and "800 ms" in out
    assert "human" in out and "spot on" in out
    assert "summarise" in out


def test_show_unknown_trace_is_a_clear_error(config_file: Path) -> None:
    result = CliRunner().invoke(main, ["traces", "--config", str(config_file), "show", "nope"])
    assert result.exit_code != 0
    assert "no trace 'nope'" in result.output


def test_export_jsonl_since(config_file: Path, tmp_path: Path) -> None:
    out = run(config_file, "export", "--since", "2d", "--format", "jsonl")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [row["trace_id"] for row in rows] == ["t-new", "t-err"]
    assert rows[0]["steps"][0]["worker"] == "small"
    target = tmp_path / "all.jsonl"
    run(config_file, "export", "-o", str(target))
    assert len(target.read_text().splitlines()) == 3


def test_bad_since_names_the_option(config_file: Path) -> None:
    result = CliRunner().invoke(
        main, ["traces", "--config", str(config_file), "ls", "--since", "yesterday-ish"]
    )
    assert result.exit_code == 2
    assert "--since" in result.output and "not a time" in result.output
