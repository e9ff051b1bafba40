from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from podium.cli import main
from podium.config import parse_config
from podium.costs.memo import config_snippet, proposed_workers, recommended
from podium.costs.prices import packaged_table
from podium.costs.project import project
from podium.costs.sources import load_workloads

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "costs"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI reads ./podium.yaml or $PODIUM_CONFIG when present: keep the tests' own."""
    monkeypatch.delenv("PODIUM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _sections(memo: str) -> list[str]:
    return [line[3:] for line in memo.splitlines() if line.startswith("## ")]


def test_diagnose_writes_a_memo_with_charts_and_html(tmp_path: Path) -> None:
    out = tmp_path / "memo" / "memo.md"
    result = CliRunner().invoke(
        main,
        [
            "diagnose",
            "--usage",
            str(EXAMPLES / "accounting-60-usage.jsonl"),
            "--out",
            str(out),
            "--html",
            "--title",
            "Example practice",
        ],
    )
    assert result.exit_code == 0, result.output
    memo = out.read_text(encoding="utf-8")
    assert memo.startswith("# AI architecture memo: Example practice")
    sections = _sections(memo)
    assert sections[0] == "Executive summary"  # the three numbers come first
    for needed in (
        "Where the spend goes",
        "Four architectures, the same workloads",
        "Lock-in points",
        "Proposed routing rules and worker pool",
        "Governance",
    ):
        assert needed in sections
    summary = memo.split("## Where the spend goes")[0]
    assert "Annual AI spend today" in summary
    assert "Spend with one vendor" in summary
    assert "saves $" in summary
    assert "next-quarter" in summary
    charts = sorted(tmp_path.joinpath("memo").glob("*.png"))
    assert len(charts) == 3
    for chart in charts:
        assert chart.read_bytes().startswith(PNG)
        assert f"]({chart.name})" in memo  # linked next to the memo
    page = out.with_suffix(".html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 3
    encoded = page.split("data:image/png;base64,")[1].split('"')[0]
    assert base64.b64decode(encoded).startswith(PNG)
    assert "<table>" in page and "<h2>Executive summary</h2>" in page


def test_memo_names_lock_in_and_governance_from_the_usage(tmp_path: Path) -> None:
    out = tmp_path / "memo.md"
    result = CliRunner().invoke(
        main,
        [
            "diagnose",
            "--usage",
            str(EXAMPLES / "manufacturer-120-usage.csv"),
            "--out",
            str(out),
            "--no-charts",
        ],
    )
    assert result.exit_code == 0, result.output
    memo = out.read_text(encoding="utf-8")
    assert "![" not in memo
    lock_in = memo.split("## Lock-in points")[1].split("## ")[0]
    assert "100% of spend with openai" in lock_in
    assert "fine-tuned model" in lock_in  # the ft: model of quote-triage
    assert "dated snapshot" in lock_in
    assert "**batch** in supplier-documents" in lock_in
    assert "not priced" in memo  # the unknown model's requests are counted, not dropped
    governance = memo.split("## Governance")[1]
    assert "data processing agreement" in governance
    assert "openai" in governance


def test_proposed_configuration_is_valid_podium_yaml(tmp_path: Path) -> None:
    table = packaged_table()
    workloads = load_workloads(EXAMPLES / "accounting-60-usage.jsonl", table)
    snippet = config_snippet(project(workloads, table))
    data = yaml.safe_load(snippet)
    config = parse_config({"data_dir": str(tmp_path), **data})
    workers = {w.name for w in config.workers}
    rules = config.routing.rules
    assert len(rules) == len(workloads.workloads)
    assert rules[0].match.caller == {"app": "payroll-checks"}  # restricted data first
    for rule in rules:
        assert rule.worker in workers
        assert set(rule.fallbacks) <= workers
        primary = next(w for w in config.workers if w.name == rule.worker)
        for fallback in rule.fallbacks:
            second = next(w for w in config.workers if w.name == fallback)
            assert second.profile.vendor != primary.profile.vendor  # a second source
    for worker in config.workers:
        assert worker.api_key_env and worker.price.input > 0


def test_recommendation_meets_every_need_and_ignores_unmeasured_learned_router() -> None:
    table = packaged_table()
    workloads = load_workloads(EXAMPLES / "manufacturer-120.yaml", table)
    result = project(workloads, table)
    best = recommended(result)
    assert best.key in ("rules", "per-workload")
    assert best.meets_need[0] == best.meets_need[1]


def test_diagnose_on_a_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_text("", encoding="utf-8")
    result = CliRunner().invoke(main, ["diagnose", "--usage", str(path), "--out", "m.md"])
    assert result.exit_code == 1
    assert "empty" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("scenario", ["vendor-shock", "gpt-4o=-50%"])
def test_diagnose_takes_another_scenario(tmp_path: Path, scenario: str) -> None:
    out = tmp_path / "memo.md"
    result = CliRunner().invoke(
        main,
        [
            "diagnose",
            "--usage",
            str(EXAMPLES / "manufacturer-120.yaml"),
            "--out",
            str(out),
            "--no-charts",
            "--scenario",
            scenario,
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"Annual, {scenario}" in out.read_text(encoding="utf-8")


def test_proposed_workers_keep_long_prompt_tiers(tmp_path: Path) -> None:
    table = packaged_table()
    (worker,) = proposed_workers([table.models["claude-sonnet-4.5"]], table)
    assert worker["price"]["tiers"] == [
        {"above": 200_000, "input": 6.0, "output": 22.5, "cached_input": 0.6}
    ]
    config = parse_config({"data_dir": str(tmp_path), "workers": [worker]})
    assert config.workers[0].price.at(300_000).output == 22.5  # billed as listed


def test_memo_shows_the_share_of_long_prompts(tmp_path: Path) -> None:
    usage = tmp_path / "usage.csv"
    usage.write_text(
        "timestamp,model,num_model_requests,input_tokens,output_tokens,feature\n"
        "1788220800,gemini-2.5-pro,9,90000,4500,review\n"
        "1788224400,gemini-2.5-pro,1,400000,500,review\n",
        encoding="utf-8",
    )
    out = tmp_path / "memo.md"
    result = CliRunner().invoke(
        main,
        ["diagnose", "--usage", str(usage), "--out", str(out), "--no-charts", "--period-days", "1"],
    )
    assert result.exit_code == 0, result.output
    memo = out.read_text(encoding="utf-8")
    assert "49,000 / 500 (10% >200k)" in memo  # a mean of 49k, yet a tenth past 200k
