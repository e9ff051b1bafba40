from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.config import parse_config
from podium.costs.prices import PriceError, load_prices, packaged_table
from podium.costs.project import (
    ASSUMED_LEARNED_FRACTION,
    cheapest,
    configured_rules,
    project,
    read_offline_report,
)
from podium.costs.workloads import Workload, read_workload_file
from podium.workers import price_tokens

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "costs"


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The CLI reads ./podium.yaml or $PODIUM_CONFIG when present: keep the tests' own."""
    monkeypatch.delenv("PODIUM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def _manufacturer() -> object:
    return read_workload_file(EXAMPLES / "manufacturer-120.yaml")


def test_four_architectures_plus_today() -> None:
    workloads = read_workload_file(EXAMPLES / "manufacturer-120.yaml")
    result = project(workloads, packaged_table())
    keys = [arch.key for arch in result.architectures]
    assert keys == ["as-run", "single-vendor", "per-workload", "rules", "learned"]
    # The company runs on OpenAI, so the single-vendor frontier is OpenAI's flagship.
    assert result.frontier.model == "gpt-5"
    single = result.get("single-vendor")
    assert single is not None
    quoting = next(w for w in workloads.workloads if w.name == "quoting-emails")
    expected = 300 * 250 * (4000 * 1.25 + 450 * 10.0) / 1_000_000
    assert single.priced.by_workload["quoting-emails"] == pytest.approx(expected)
    assert quoting.need == "low"
    total = sum(single.priced.by_workload.values())
    assert single.priced.annual_usd == pytest.approx(total)


def test_per_workload_stays_with_frontier_vendors_and_meets_every_need() -> None:
    table = packaged_table()
    result = project(read_workload_file(EXAMPLES / "manufacturer-120.yaml"), table)
    per_workload = result.get("per-workload")
    assert per_workload is not None
    assert per_workload.meets_need == (7, 7)
    for assignment in per_workload.plan:
        price = table.lookup(assignment.calls[0].model)
        assert price is not None
        assert price.kind == "proprietary"
        assert price.vendor in {"openai", "anthropic", "google", "xai"}
    single = result.get("single-vendor")
    assert single is not None
    assert per_workload.priced.annual_usd < single.priced.annual_usd


def test_default_rules_keep_data_from_vendors_that_train_and_send_code_to_code_models() -> None:
    table = packaged_table()
    result = project(read_workload_file(EXAMPLES / "accounting-60.yaml"), table)
    rules = result.get("rules")
    assert rules is not None
    for assignment in rules.plan:
        price = table.lookup(assignment.calls[0].model)
        assert price is not None and price.vendor != "deepseek"  # may train on API data
    payroll = next(a for a in rules.plan if a.workload == "payroll-checks")
    assert "on-premises" in payroll.note  # restricted data, no on-premises worker configured


def test_default_rules_send_code_to_a_code_model_when_one_is_graded_for_the_need(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "workloads:\n"
        "  - {name: scripts, requests_per_day: 50, input_tokens: 3000, output_tokens: 800,\n"
        "     quality: medium, task: code}\n"
        "  - {name: hard-scripts, requests_per_day: 5, input_tokens: 3000, output_tokens: 800,\n"
        "     quality: high, task: code}\n",
        encoding="utf-8",
    )
    table = packaged_table()
    plan = project(read_workload_file(path), table).get("rules")
    assert plan is not None
    medium, high = plan.plan
    assert medium.rule.startswith("code ->")
    chosen = table.lookup(medium.calls[0].model)
    assert chosen is not None and "code" in chosen.tasks
    # No code model is graded high, so a high-need code workload goes to a high-grade model.
    strong = table.lookup(high.calls[0].model)
    assert strong is not None and strong.grade == "high"


def test_sensitivity_moves_only_the_changed_vendor() -> None:
    result = project(read_workload_file(EXAMPLES / "manufacturer-120.yaml"), packaged_table())
    single = result.get("single-vendor")
    assert single is not None
    rows = {row.label: row.annual_usd for row in result.sensitivity}
    assert rows["openai +30%"]["single-vendor"] == pytest.approx(single.priced.annual_usd * 1.3)
    assert rows["openai -30%"]["single-vendor"] == pytest.approx(single.priced.annual_usd * 0.7)
    other = next(label for label in rows if not label.startswith("openai"))
    assert rows[other]["single-vendor"] == pytest.approx(single.priced.annual_usd)
    scenarios = {row.label for row in result.scenarios}
    assert {"next-quarter", "vendor-shock"} <= scenarios


def test_scenario_reprices_and_rechooses() -> None:
    table = packaged_table()
    workloads = read_workload_file(EXAMPLES / "manufacturer-120.yaml")
    today = project(workloads, table)
    cheaper = project(workloads, table, scenario=table.scenario("*=-50%"))
    for key in ("single-vendor", "per-workload", "rules"):
        now, later = today.get(key), cheaper.get(key)
        assert now is not None and later is not None
        assert later.priced.annual_usd == pytest.approx(now.priced.annual_usd / 2)
    assert cheaper.table.applied is not None


def test_learned_router_without_a_report_is_a_labelled_assumption() -> None:
    result = project(read_workload_file(EXAMPLES / "manufacturer-120.yaml"), packaged_table())
    learned, single = result.get("learned"), result.get("single-vendor")
    assert learned is not None and single is not None
    assert learned.assumption
    assert "assum" in learned.quality_note
    assert learned.priced.annual_usd == pytest.approx(
        single.priced.annual_usd * ASSUMED_LEARNED_FRACTION
    )


def _report(tmp_path: Path, routers: dict[str, object]) -> Path:
    path = tmp_path / "offline.json"
    path.write_text(
        json.dumps(
            {
                "n": 100,
                "single": {
                    "gpt-5": {"quality": 0.9, "cost": 0.01},
                    "gpt-5-nano": {"quality": 0.6, "cost": 0.001},
                },
                "best_single": {"model": "gpt-5", "quality": 0.9, "cost": 0.01},
                "oracle": {"quality": 0.97, "cost": 0.002},
                "routers": routers,
            }
        ),
        encoding="utf-8",
    )
    return path


def test_offline_report_sets_the_learned_router(tmp_path: Path) -> None:
    path = _report(
        tmp_path,
        {
            "knn": {"curve": [], "aiq": 0.8, "cost_to_match_best": 0.004},
            "mlp": {"curve": [], "aiq": 0.8, "cost_to_match_best": 0.003},
        },
    )
    point = read_offline_report(path)
    assert (point.cost_fraction, point.quality_ratio, point.router) == (
        pytest.approx(0.3),
        1.0,
        "mlp",
    )
    result = project(
        read_workload_file(EXAMPLES / "manufacturer-120.yaml"),
        packaged_table(),
        learned_point=point,
    )
    learned, single = result.get("learned"), result.get("single-vendor")
    assert learned is not None and single is not None
    assert not learned.assumption
    assert learned.priced.annual_usd == pytest.approx(single.priced.annual_usd * 0.3)
    assert single.quality == pytest.approx(0.9)  # gpt-5 was measured offline
    assert learned.quality == pytest.approx(0.9)


def test_offline_report_without_a_matched_cost_uses_the_best_fraction(tmp_path: Path) -> None:
    path = _report(
        tmp_path,
        {
            "knn": {
                "cost_to_match_best": None,
                "quality_at_cost_fraction": {"0.1": 0.7, "0.25": 0.81, "0.5": 0.81},
            }
        },
    )
    point = read_offline_report(path)
    assert point.cost_fraction == pytest.approx(0.25)  # the cheapest at the best quality
    assert point.quality_ratio == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("text", "needle"), [("{", "not valid JSON"), ('{"routers": {}}', "not an offline")]
)
def test_bad_offline_reports_are_clear_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "report.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PriceError, match=needle):
        read_offline_report(path)


def test_configured_rules_are_evaluated_per_workload() -> None:
    workloads = read_workload_file(EXAMPLES / "accounting-60.yaml")
    rules = [
        {"name": "private", "match": {"data_class": ["restricted"]}, "worker": "local"},
        {"name": "long", "match": {"min_tokens": 10000}, "worker": "gpt-5-mini"},
        {"name": "by-header", "match": {"headers": {"x-team": "*"}}, "worker": "gpt-5"},
        {"name": "extract", "match": {"keywords": ["invoice"]}, "worker": "gpt-5-nano"},
    ]
    plan, warnings = configured_rules(workloads, rules, "claude-sonnet-4.5")
    chosen = {a.workload: (a.calls[0].model, a.rule) for a in plan}
    assert chosen["payroll-checks"] == ("local", "rule private")
    assert chosen["document-summaries"] == ("gpt-5-mini", "rule long")
    assert chosen["invoice-extraction"] == ("gpt-5-nano", "rule extract")
    assert chosen["tax-research"][1] == "no rule matched: default worker"
    assert any("headers" in warning for warning in warnings)


def test_frontier_can_be_chosen_and_unknown_frontier_is_an_error() -> None:
    workloads = read_workload_file(EXAMPLES / "manufacturer-120.yaml")
    result = project(workloads, packaged_table(), frontier="claude-opus-4.5")
    assert result.frontier.model == "claude-opus-4.5"
    with pytest.raises(PriceError, match="not in the price table"):
        project(workloads, packaged_table(), frontier="gpt-99")


def test_cli_table_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    workload = str(EXAMPLES / "accounting-60.yaml")
    text = runner.invoke(main, ["costs", "project", "--workload", workload])
    assert text.exit_code == 0, text.output
    for title in ("Single-vendor frontier", "Frontier picked per workload", "Rules router"):
        assert title in text.output
    assert "Sensitivity" in text.output and "anthropic +30%" in text.output
    raw = runner.invoke(
        main, ["costs", "project", "--workload", workload, "--json", "--scenario", "next-quarter"]
    )
    assert raw.exit_code == 0, raw.output
    data = json.loads(raw.output)
    assert data["prices"]["scenario"]["name"] == "next-quarter"
    assert {a["key"] for a in data["architectures"]} >= {"single-vendor", "rules", "learned"}
    assert all(a["annual_usd"] >= 0 for a in data["architectures"])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--workload", "absent.yaml"], "no such file"),
        (["--workload", "{accounting}", "--scenario", "bogus"], "unknown scenario"),
        (["--workload", "{accounting}", "--prices", "absent.yaml"], "no such prices file"),
        (["--workload", "{accounting}", "--frontier", "gpt-99"], "not in the price table"),
    ],
)
def test_cli_bad_input_is_an_error_message_not_a_traceback(args: list[str], needle: str) -> None:
    args = [arg.replace("{accounting}", str(EXAMPLES / "accounting-60.yaml")) for arg in args]
    result = CliRunner().invoke(main, ["costs", "project", *args])
    assert result.exit_code == 1
    assert needle in result.output
    assert "Traceback" not in result.output


def test_cli_prices_lists_the_table_with_its_date() -> None:
    result = CliRunner().invoke(main, ["costs", "prices", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["as_of"] and data["models"]["gpt-5"]["source"].startswith("https://")


def test_offline_point_is_the_cheapest_that_keeps_95_percent_of_quality(tmp_path: Path) -> None:
    path = _report(
        tmp_path,
        {
            "learned": {
                "cost_to_match_best": 0.0084,  # 84% of the best model's cost at equal quality
                "quality_at_cost_fraction": {"0.1": 0.80, "0.25": 0.85, "0.5": 0.876},
            }
        },
    )
    point = read_offline_report(path)
    assert point.cost_fraction == pytest.approx(0.5)
    assert point.quality_ratio == pytest.approx(0.876 / 0.9)


LONG_AND_SHORT = (
    "workloads:\n"
    "  - {name: contract-review, requests_per_day: 40, input_tokens: 300000,\n"
    "     output_tokens: 2000, quality: high}\n"
    "  - {name: chat, requests_per_day: 400, input_tokens: 3000, output_tokens: 300,\n"
    "     quality: high}\n"
)


def test_long_prompts_on_a_tiered_worker_cost_the_tier_rate(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(LONG_AND_SHORT, encoding="utf-8")
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "workers": [
                {
                    "name": "house-sonnet",
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "price": {
                        "input": 3.0,
                        "output": 15.0,
                        "tiers": [{"above": 200_000, "input": 6.0, "output": 22.5}],
                    },
                }
            ],
        }
    )
    table = load_prices([], config)
    result = project(read_workload_file(path), table, frontier="house-sonnet")
    single = result.get("single-vendor")
    assert single is not None
    worker = config.workers[0]
    # What the gateway would bill for each request, a year of them.
    long_year = 40 * 365 * price_tokens(worker.price, 300_000, 2_000)
    short_year = 400 * 365 * price_tokens(worker.price, 3_000, 300)
    assert single.priced.by_workload["contract-review"] == pytest.approx(long_year)
    assert long_year == pytest.approx(40 * 365 * (300_000 * 6.0 + 2_000 * 22.5) / 1e6)
    assert single.priced.by_workload["chat"] == pytest.approx(short_year)
    assert short_year == pytest.approx(400 * 365 * (3_000 * 3.0 + 300 * 15.0) / 1e6)


def test_cli_projects_long_prompts_at_the_tier_and_scenarios_scale_it(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(LONG_AND_SHORT, encoding="utf-8")
    args = ["costs", "project", "--workload", str(path), "--frontier", "claude-sonnet-4.5"]
    long_year = 40 * 365 * (300_000 * 6.0 + 2_000 * 22.5) / 1e6  # $6 / $22.50 past 200k
    text = CliRunner().invoke(main, args)
    assert text.exit_code == 0, text.output
    row = next(line for line in text.output.splitlines() if line.startswith("contract-review"))
    assert f"${long_year:,.0f} claude-sonnet-4.5" in row
    raw = CliRunner().invoke(main, [*args, "--json"])
    single = next(a for a in json.loads(raw.output)["architectures"] if a["key"] == "single-vendor")
    assert single["by_workload"]["contract-review"] == pytest.approx(long_year)
    halved = CliRunner().invoke(main, [*args, "--json", "--scenario", "claude-sonnet-4.5=-50%"])
    assert halved.exit_code == 0, halved.output
    single = next(
        a for a in json.loads(halved.output)["architectures"] if a["key"] == "single-vendor"
    )
    assert single["by_workload"]["contract-review"] == pytest.approx(long_year / 2)


def test_per_workload_weighs_long_prompts_at_their_tier() -> None:
    table = packaged_table()
    long = Workload("long", 10, 300_000, 2_000, quality=0.9, max_input_tokens=300_000)
    chosen = cheapest([table.models["gpt-5"], table.models["gemini-2.5-pro"]], long)
    # The same base price; past 200k tokens Gemini 2.5 Pro costs twice as much input.
    assert chosen is not None and chosen.model == "gpt-5"
