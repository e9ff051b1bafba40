"""podium contracts ls|show|validate|test|promote|stats."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from podium.cli import main
from podium.testing.fakes import Behaviour
from podium.testing.openai_fake import FakeOpenAI
from tests.contract_helpers import GOOD, TICKET, fake_worker, running, write_contract


async def podium(*args: str) -> Result:
    # Fakes and gateways run on this event loop; the CLI blocks, so it runs on a thread.
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


def config_file(tmp_path: Path, workers: list[dict[str, Any]]) -> str:
    path = tmp_path / "podium.yaml"
    data = {
        "data_dir": str(tmp_path / "data"),
        "workers": workers,
        "contracts": {"dir": str(tmp_path / "contracts")},
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


async def test_ls_show_and_validate_offline(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    config = config_file(tmp_path, [])
    listed = await podium("contracts", "ls", "--config", config)
    assert listed.exit_code == 0, listed.output
    assert listed.output.split("\n")[1].split()[:6] == ["ticket", "1", "1", "-", "exact", "2"]
    shown = await podium("contracts", "show", "ticket", "--json", "--config", config)
    assert json.loads(shown.output)["output_schema"] == TICKET["output_schema"]
    missing = await podium("contracts", "show", "nope", "--config", config)
    assert missing.exit_code != 0 and "no contract nope" in missing.output
    valid = await podium("contracts", "validate", "--config", config)
    assert valid.exit_code == 0 and "ok" in valid.output
    bad = tmp_path / "broken" / "ticket.yaml"
    write_contract(bad.parent, {**TICKET, "input_schema": {"type": "object", "required": 3}})
    invalid = await podium("contracts", "validate", str(bad.parent))
    assert invalid.exit_code == 1
    assert (
        "input_schema is not a valid JSON Schema" in invalid.output and str(bad) in invalid.output
    )
    shipped = await podium("contracts", "validate", str(Path(__file__).parent.parent / "contracts"))
    assert shipped.exit_code == 0, shipped.output


async def test_test_reports_pass_rate_per_worker_and_feeds_signals(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET)
    async with (
        FakeOpenAI(Behaviour(reply=GOOD)) as fake,
        FakeOpenAI(Behaviour(reply='{"team": "tech", "confidence": 1}')) as other,
    ):
        workers = [fake_worker("a", fake.base_url), fake_worker("b", other.base_url)]
        config = config_file(tmp_path, workers)
        result = await podium(
            "contracts", "test", "ticket", "--workers", "a,b", "--json", "--config", config
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output[result.output.index("[") :])
        rows = {r["worker"]: r["row"] for r in report}
        # Examples: billing then tech. Worker a always says billing, b always tech.
        assert rows["a"]["passed"] == "1/2" and rows["b"]["passed"] == "1/2"
        assert rows["a"]["schema-valid"] == "2/2" and float(rows["a"]["mean $"]) > 0
        stats = await podium("contracts", "stats", "ticket", "--config", config)
        assert stats.exit_code == 0, stats.output
        lines = [line.split() for line in stats.output.splitlines()[1:]]
        assert {(cols[2], cols[3], cols[6]) for cols in lines} == {
            ("test", "a", "0.50"),
            ("test", "b", "0.50"),
        }
        # Through a running gateway too (its verdicts go back as feedback).
        async with running(
            tmp_path / "served", workers, contracts={"dir": str(tmp_path / "contracts")}
        ) as (_, url):
            remote = await podium("contracts", "test", "ticket", "--url", url, "--config", config)
            assert remote.exit_code == 0, remote.output
            assert remote.output.splitlines()[-1].split()[:5] == [
                "(routed)",
                "2",
                "2/2",
                "1/2",
                "0.50",
            ]


async def test_promote_makes_a_version_current(tmp_path: Path) -> None:
    write_contract(tmp_path / "contracts", TICKET, filename="ticket@1.yaml")
    write_contract(tmp_path / "contracts", {**TICKET, "version": "2"}, filename="ticket@2.yaml")
    config = config_file(tmp_path, [])
    path = tmp_path / "podium.yaml"
    data = yaml.safe_load(path.read_text())
    data["contracts"]["shadow"] = {"versions": {"ticket": "2"}}
    path.write_text(yaml.safe_dump(data))
    listed = await podium("contracts", "ls", "--config", config)
    assert listed.output.split("\n")[1].split()[:4] == ["ticket", "1,", "2", "1"]
    promoted = await podium("contracts", "promote", "ticket", "2", "--config", config)
    assert promoted.exit_code == 0, promoted.output
    assert "ticket: 1 -> 2" in promoted.output
    listed = await podium("contracts", "ls", "--config", config)
    assert listed.output.split("\n")[1].split()[:4] == ["ticket", "1,", "2", "2"]
    unknown = await podium("contracts", "promote", "ticket", "9", "--config", config)
    assert unknown.exit_code != 0


async def test_a_judge_evaluator_asks_its_worker_and_reports_its_reason(tmp_path: Path) -> None:
    judged = {
        **TICKET,
        "evaluator": {"kind": "judge", "worker": "judge", "criteria": "The team is right."},
    }
    write_contract(tmp_path / "contracts", judged)
    rejection = '{"verdict": "reject", "reason": "billing is not a team for crashes"}'
    async with (
        FakeOpenAI(Behaviour(reply=GOOD)) as answers,
        FakeOpenAI(Behaviour(reply=rejection)) as judge,
    ):
        workers = [fake_worker("a", answers.base_url), fake_worker("judge", judge.base_url)]
        config = config_file(tmp_path, workers)
        result = await podium(
            "contracts", "test", "ticket", "--workers", "a", "--json", "--config", config
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.output[result.output.index("[") :])
        assert report[0]["row"]["passed"] == "0/2"
        assert "billing is not a team for crashes" in json.dumps(report)
        # The judge saw the task, the output and the criteria, and could only accept or reject.
        asked = judge.received[0].body
        prompt = asked["messages"][0]["content"]
        assert "I was charged twice" in prompt and '"team":"billing"' in prompt
        assert "Criteria: The team is right." in prompt
        schema = asked["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["verdict"]["enum"] == ["accept", "reject"]
