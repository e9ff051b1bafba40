from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from podium.cli import main
from podium.config import parse_config
from podium.costs.prices import PriceError, load_prices, packaged_table
from podium.workers import price_tokens


def test_packaged_table_has_a_date_and_a_source_for_every_entry() -> None:
    table = packaged_table()
    assert table.as_of is not None
    dt.date.fromisoformat(table.as_of)
    assert len(table.models) >= 30
    for price in table.models.values():
        assert price.source.startswith("https://"), price.model
        assert price.as_of == table.as_of
        assert price.output >= price.input * 0.5
    vendors = {price.vendor for price in table.models.values()}
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "together"} <= vendors


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4.5"),
        ("claude-3-5-haiku-20241022", "claude-3.5-haiku"),
        ("GPT-5", "gpt-5"),
        ("meta-llama/Llama-4-Maverick-17B-128E-Instruct-FP8", "llama-4-maverick"),
        ("mistral-large-2411", "mistral-large"),
        ("gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ],
)
def test_lookup_tolerates_snapshots_prefixes_and_spelling(name: str, key: str) -> None:
    price = packaged_table().lookup(name)
    assert price is not None
    assert price.model == key


@pytest.mark.parametrize("name", ["gpt-4o-ultra", "ft:gpt-4o-mini-2024-07-18:acme::x1", "", "x"])
def test_unknown_models_are_unknown_not_guessed(name: str) -> None:
    assert packaged_table().lookup(name) is None


def test_cost_counts_cached_input_and_batch_discount() -> None:
    gpt5 = packaged_table().lookup("gpt-5")
    assert gpt5 is not None
    assert gpt5.cost(1_000_000, 0) == pytest.approx(1.25)
    assert gpt5.cost(0, 1_000_000) == pytest.approx(10.0)
    assert gpt5.cost(1_000_000, 0, 400_000) == pytest.approx(0.6 * 1.25 + 0.4 * 0.125)
    assert gpt5.cost(1_000_000, 1_000_000, batch_share=1.0) == pytest.approx(11.25 / 2)


def test_scenarios_apply_the_most_specific_change() -> None:
    table = packaged_table()
    scenario = table.scenario("gpt-5=-50%,vendor:openai=-10%,*=+20%")
    changed = table.with_scenario(scenario)
    assert changed.models["gpt-5"].input == pytest.approx(1.25 * 0.5)
    assert changed.models["gpt-4o"].input == pytest.approx(2.5 * 0.9)
    assert changed.models["claude-sonnet-4.5"].output == pytest.approx(15 * 1.2)
    assert changed.applied is scenario
    assert table.models["gpt-5"].input == 1.25  # the original is untouched


def test_packaged_next_quarter_scenario_exists_and_is_labelled_an_assumption() -> None:
    table = packaged_table()
    scenario = table.scenario("next-quarter")
    assert "assumption" in scenario.description
    cheaper = table.with_scenario(scenario)
    assert cheaper.models["llama-4-maverick"].input == pytest.approx(0.27 * 0.7)
    assert cheaper.models["gpt-5"].input == pytest.approx(1.25 * 0.9)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("nope", "unknown scenario"),
        ("gpt-9=-30%", "not in the price table"),
        ("gpt-5=-130%", "more than 100%"),
        ("gpt-5=30", "ambiguous"),
        ("gpt-5=cheaper", "not a price change"),
    ],
)
def test_bad_scenarios_are_clear_errors(spec: str, needle: str) -> None:
    table = packaged_table()
    with pytest.raises(PriceError, match=needle):
        table.with_scenario(table.scenario(spec))


def test_a_prices_file_overrides_and_extends(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "as_of: '2026-11-01'\n"
        "models:\n"
        "  gpt-4o: {input: 2.0}\n"
        "  acme-7b: {vendor: acme, input: 0.1, output: 0.2, grade: low}\n"
        "scenarios:\n"
        "  renegotiated: {'vendor:openai': -25%}\n",
        encoding="utf-8",
    )
    table = load_prices([prices])
    assert table.models["gpt-4o"].input == 2.0
    assert table.models["gpt-4o"].output == 10.0  # unchanged fields keep the list price
    assert table.models["gpt-4o"].source == str(prices)
    assert table.lookup("acme-7b") is not None
    assert table.scenarios["renegotiated"].changes == {"vendor:openai": -0.25}
    assert table.layers == ["podium price table", str(prices)]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("models:\n  new-model: {input: 1}\n", "needs vendor, output"),
        ("models:\n  gpt-4o: {input: -1}\n", "models.gpt-4o.input"),
        ("models:\n  gpt-4o: {inptu: 1}\n", "inptu"),
        ("[1, 2", "not valid YAML"),
        ("- a list\n", "top level must be a mapping"),
        ("scenarios:\n  x: {gpt-5: 'a lot'}\n", "not a price change"),
    ],
)
def test_bad_prices_files_are_clear_errors(tmp_path: Path, text: str, needle: str) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(text, encoding="utf-8")
    with pytest.raises(PriceError, match=needle) as caught:
        load_prices([prices])
    assert str(prices) in str(caught.value)


def test_missing_prices_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PriceError, match="no such prices file"):
        load_prices([tmp_path / "absent.yaml"])


def test_podium_yaml_costs_section_and_workers_are_prices_too(tmp_path: Path) -> None:
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "workers": [
                {
                    "name": "house-gpt",
                    "provider": "openai",
                    "model": "gpt-4o",
                    "price": {"input": 1.5, "output": 6.0},
                    "profile": {"vendor": "openai"},
                }
            ],
            "costs": {
                "prices": {"gpt-5": {"input": 1.0}},
                "scenarios": {"next-quarter": {"gpt-5": "-30%"}},
                "frontier": "gpt-5",
            },
        }
    )
    table = load_prices([], config)
    worker = table.lookup("house-gpt")
    assert worker is not None and worker.worker
    assert (worker.input, worker.output, worker.vendor) == (1.5, 6.0, "openai")
    assert worker.grade == "medium"  # the listed model's grade
    assert table.models["gpt-4o"].input == 2.5  # the list price stays listed
    assert table.models["gpt-5"].input == 1.0
    assert table.scenarios["next-quarter"].changes == {"gpt-5": -0.3}


def test_stale_table_warns_with_its_age() -> None:
    table = packaged_table()
    assert table.as_of is not None
    fresh = dt.date.fromisoformat(table.as_of) + dt.timedelta(days=10)
    old = dt.date.fromisoformat(table.as_of) + dt.timedelta(days=200)
    assert table.staleness_warning(fresh) is None
    warning = table.staleness_warning(old)
    assert warning is not None and "200 days old" in warning


def test_a_long_prompt_costs_the_tier_rate_and_a_short_one_the_base_rate() -> None:
    sonnet = packaged_table().lookup("claude-sonnet-4.5")
    assert sonnet is not None and sonnet.tiers
    # Past 200k input tokens every token of the request is billed at $6 / $22.50.
    assert sonnet.cost(300_000, 2_000) == pytest.approx((300_000 * 6.0 + 2_000 * 22.5) / 1e6)
    assert sonnet.cost(100_000, 2_000) == pytest.approx((100_000 * 3.0 + 2_000 * 15.0) / 1e6)
    assert sonnet.cost(200_000, 0) == pytest.approx(200_000 * 3.0 / 1e6)  # not past it
    # Cache reads of a long prompt pay the tier's cache-read rate.
    assert sonnet.cost(300_000, 0, 100_000) == pytest.approx((200_000 * 6.0 + 100_000 * 0.60) / 1e6)
    gemini = packaged_table().lookup("gemini-2.5-pro")
    assert gemini is not None
    assert gemini.cost(250_000, 1_000) == pytest.approx((250_000 * 2.5 + 1_000 * 15.0) / 1e6)


def test_a_scenario_scales_the_long_prompt_tiers_too() -> None:
    table = packaged_table()
    cheaper = table.with_scenario(table.scenario("claude-sonnet-4.5=-50%"))
    sonnet = cheaper.models["claude-sonnet-4.5"]
    tier = sonnet.tiers[0]
    assert (tier.above, tier.input, tier.output) == (200_000, 3.0, 11.25)
    assert tier.cached_input == pytest.approx(0.30)
    before = table.models["claude-sonnet-4.5"].cost(300_000, 2_000)
    assert sonnet.cost(300_000, 2_000) == pytest.approx(before / 2)
    assert table.models["claude-sonnet-4.5"].tiers[0].input == 6.0  # the original is untouched


def test_a_workers_tiers_price_a_projection_as_the_gateway_bills(tmp_path: Path) -> None:
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "workers": [
                {
                    "name": "house-sonnet",
                    "provider": "anthropic",
                    "model": "claude-sonnet-4-5",
                    "price": {
                        "input": 2.4,
                        "output": 12.0,
                        "cached_input": 0.24,
                        # Two tiers, the first leaving cached input at the base rate.
                        "tiers": [
                            {"above": 200_000, "input": 4.8, "output": 18.0},
                            {"above": 500_000, "input": 7.2, "output": 24.0, "cached_input": 0.7},
                        ],
                    },
                }
            ],
        }
    )
    worker = config.workers[0]
    price = load_prices([], config).models["house-sonnet"]
    assert [(tier.above, tier.cached_input) for tier in price.tiers] == [
        (200_000, 0.24),
        (500_000, 0.7),
    ]
    for tokens in (1_000, 200_000, 200_001, 450_000, 500_000, 700_000):
        billed = price_tokens(worker.price, tokens, 3_000, tokens // 4)
        assert price.cost(tokens, 3_000, tokens // 4) == pytest.approx(billed), tokens


def test_a_prices_file_can_give_tiers(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "models:\n"
        "  gpt-4.1: {tiers: [{above: 128000, input: 4.0}]}\n"
        "  acme-long: {vendor: acme, input: 1.0, output: 2.0,\n"
        "              tiers: [{above: 100000, output: 3}]}\n",
        encoding="utf-8",
    )
    table = load_prices([prices])
    tier = table.models["gpt-4.1"].tiers[0]
    # Rates the file leaves out are the model's base rates.
    assert (tier.above, tier.input, tier.output, tier.cached_input) == (128_000, 4.0, 8.0, 0.5)
    assert table.models["acme-long"].tiers[0].output == 3.0
    assert table.models["acme-long"].tiers[0].input == 1.0
    assert table.thresholds() == (100_000, 128_000, 200_000)
    # An override that does not name tiers keeps the listed ones.
    again = tmp_path / "again.yaml"
    again.write_text("models:\n  claude-sonnet-4.5: {input: 2.5}\n", encoding="utf-8")
    sonnet = load_prices([again]).models["claude-sonnet-4.5"]
    assert sonnet.input == 2.5 and sonnet.tiers[0].input == 6.0


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (
            "models:\n  gpt-4o: {tiers: [{above: 200000, input: 5}, {above: 100000, input: 4}]}\n",
            "ascending",
        ),
        ("models:\n  gpt-4o: {tiers: [{above: 1000}, {above: 1000}]}\n", "distinct"),
        ("models:\n  gpt-4o: {tiers: [{above: 0, input: 5}]}\n", "models.gpt-4o.tiers.0.above"),
        ("models:\n  gpt-4o: {tiers: [{input: 5}]}\n", "models.gpt-4o.tiers.0.above"),
        ("models:\n  gpt-4o: {tiers: [{above: 1000, input: -1}]}\n", "tiers.0.input"),
    ],
)
def test_bad_tiers_are_clear_errors(tmp_path: Path, text: str, needle: str) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(text, encoding="utf-8")
    with pytest.raises(PriceError, match=needle) as caught:
        load_prices([prices])
    assert str(prices) in str(caught.value)


def test_cli_prices_shows_long_prompt_rates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PODIUM_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ambient ./podium.yaml
    config = tmp_path / "podium.yaml"
    config.write_text(
        "workers:\n"
        "  - name: house-gemini\n"
        "    provider: gemini\n"
        "    model: gemini-2.5-pro\n"
        "    price:\n"
        "      {input: 1.0, output: 8.0, tiers: [{above: 200000, input: 2.0, output: 12.0}]}\n",
        encoding="utf-8",
    )
    text = CliRunner().invoke(main, ["costs", "prices", "--config", str(config)])
    assert text.exit_code == 0, text.output
    lines = {line.split()[0]: line for line in text.output.splitlines() if line.strip()}
    assert "6 / 22.5 above 200k" in lines["claude-sonnet-4.5"]
    assert "2.5 / 15 above 200k" in lines["gemini-2.5-pro"]
    assert "2 / 12 above 200k" in lines["house-gemini"]
    assert "above" not in lines["gpt-5"]
    raw = CliRunner().invoke(main, ["costs", "prices", "--json", "--scenario", "vendor-shock"])
    assert raw.exit_code == 0, raw.output
    tiers = json.loads(raw.output)["models"]["claude-sonnet-4.5"]["tiers"]
    assert tiers == [{"above": 200_000, "input": 6.0, "output": 22.5, "cached_input": 0.6}]
