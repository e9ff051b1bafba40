from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from podium.cli import main
from podium.config import ConfigError, parse_config
from podium.plugins import load_plugins
from podium.routing.chain import build_routing
from podium.routing.semantic import SemanticRouter, fit_thresholds
from tests.routing_helpers import POOL, ask, context, routing_for

DEFAULTS = {"chain": ["semantic", "direct"], "semantic": {"use_default_routes": True}}


def semantic(section: dict[str, Any]) -> Any:
    return routing_for({"chain": ["semantic", "direct"], "semantic": section})


@pytest.mark.parametrize(
    ("prompt", "route", "worker"),
    [
        ("Write a Go function that parses a JSON config file", "code", "qwen2.5-coder-1.5b"),
        ("What is 37 times 41?", "math", "qwen2.5-coder-1.5b"),
        ("Pull every phone number out of this message", "extraction", "qwen2.5-coder-0.5b"),
        ("hey! how's your day going?", "chat", "smollm2-135m"),
    ],
)
async def test_the_shipped_routes_send_prompts_to_the_local_pool(
    prompt: str, route: str, worker: str
) -> None:
    routing = routing_for(DEFAULTS)
    decision = await routing.decide(ask(prompt), context(routing.parts.config))
    assert decision.route == f"semantic:{route}"
    assert decision.workflow.workers == [worker]
    assert f"semantic route {route!r}" in decision.reason
    labels = [c.label for c in decision.candidates]
    assert labels[0] == route and sorted(labels) == ["chat", "code", "extraction", "math"]
    assert decision.candidates[0].score >= decision.candidates[1].score


async def test_prompts_like_no_route_are_left_to_the_next_router() -> None:
    routing = routing_for(DEFAULTS)
    decision = await routing.decide(
        ask("Who painted the ceiling of the Sistine Chapel?"), context(routing.parts.config)
    )
    assert decision.router == "direct"


async def test_only_virtual_models_are_routed_semantically_by_default() -> None:
    routing = routing_for(DEFAULTS)
    decision = await routing.decide(
        ask("Write a Python function", model="smollm2-135m"), context(routing.parts.config)
    )
    assert decision.route == "direct" and decision.workflow.workers == ["smollm2-135m"]


async def test_a_route_whose_worker_is_not_eligible_yields_to_the_next_best() -> None:
    routing = semantic(
        {
            "routes": [
                {"name": "a", "utterances": ["sort a list in python"], "worker": POOL[2]},
                {"name": "b", "utterances": ["write python code"], "worker": POOL[1]},
            ],
            "threshold": 0.1,
        }
    )
    ctx = context(routing.parts.config, eligible=[POOL[0], POOL[1]])
    decision = await routing.decide(ask("sort this list in python"), ctx)
    assert decision.rule == "b"
    assert "not eligible" in decision.reason


@pytest.mark.parametrize("scoring", ["nearest", "centroid"])
async def test_routes_declared_as_data_with_their_own_thresholds(scoring: str) -> None:
    section = {
        "scoring": scoring,
        "routes": [
            {
                "name": "legal",
                "utterances": ["review this contract clause", "is this NDA enforceable"],
                "worker": POOL[2],
                "threshold": 0.3,
            },
            {
                "name": "poetry",
                "utterances": ["write a poem about the sea", "compose a haiku"],
                "workflow": {"template": "single", "workers": [POOL[1], POOL[0]]},
                "threshold": 0.99,
            },
        ],
    }
    routing = semantic(section)
    config = routing.parts.config
    legal = await routing.decide(ask("Please check this contract clause"), context(config))
    assert legal.route == "semantic:legal"
    poem = await routing.decide(ask("write me a poem about the ocean"), context(config))
    assert poem.router == "direct"  # similar, but below its strict threshold


async def test_targets_repoint_the_shipped_routes() -> None:
    routing = semantic({"use_default_routes": True, "targets": {"code": POOL[0]}})
    decision = await routing.decide(
        ask("Fix the bug in this Rust code"), context(routing.parts.config)
    )
    assert decision.route == "semantic:code" and decision.workflow.workers == [POOL[0]]


def test_semantic_configuration_errors_name_the_route() -> None:
    with pytest.raises(ConfigError, match="semantic route 'x'"):
        semantic({"routes": [{"name": "x", "utterances": ["hi"], "worker": "nobody"}]})
    with pytest.raises(ConfigError, match="lacks: nope"):
        semantic({"use_default_routes": True, "targets": {"nope": POOL[0]}})
    with pytest.raises(ConfigError, match=r"re-point it with routing\.semantic\.targets"):
        build_routing(
            parse_config({"routing": {"semantic": {"use_default_routes": True}}}),
            load_plugins(third_party=False),
        )
    with pytest.raises(ConfigError, match="non-empty utterance"):
        semantic({"routes": [{"name": "y", "utterances": ["  "], "worker": POOL[0]}]})


async def test_a_margin_refuses_near_ties() -> None:
    routes = [
        {"name": "one", "utterances": ["tell me about dogs"], "worker": POOL[1]},
        {"name": "two", "utterances": ["tell me about dogs please"], "worker": POOL[2]},
    ]
    routing = semantic({"routes": routes, "threshold": 0.1, "margin": 0.5})
    config = routing.parts.config
    decision = await routing.decide(ask("tell me about dogs"), context(config))
    assert decision.route == "direct"  # too close to call: left to the next router
    wide = semantic({"routes": routes, "threshold": 0.1, "margin": 0.0})
    assert (await wide.decide(ask("tell me about dogs"), context(config))).router == "semantic"


def test_fit_tunes_thresholds_on_labelled_examples() -> None:
    routing = semantic(
        {
            "routes": [
                {"name": "code", "utterances": ["write a python function"], "worker": POOL[2]},
                {"name": "math", "utterances": ["what is 12 times 7"], "worker": POOL[1]},
            ],
            "threshold": -1.0,  # takes everything until fitted
        }
    )
    router = routing.router("semantic")
    assert isinstance(router, SemanticRouter)
    examples = [
        ("implement a linked list in java", "code"),
        ("fix my javascript function", "code"),
        ("write a sorting function in c", "code"),
        ("what is 45 plus 17", "math"),
        ("compute 9 times 8", "math"),
        ("what is 100 divided by 4", "math"),
        ("who was napoleon", "other"),
        ("what is the capital of peru", "other"),
        ("tell me about the roman empire", "other"),
        ("recommend a novel", "other"),
    ]
    before = _accuracy(router, examples)
    fits = fit_thresholds(router, examples)
    assert {fit.route for fit in fits} == {"code", "math"}
    assert all(fit.threshold > -1.0 for fit in fits)
    assert router.thresholds() == {fit.route: fit.threshold for fit in fits}
    assert _accuracy(router, examples) > before
    strict = fit_thresholds(router, examples, target_precision=1.0, apply=False)
    assert all(fit.precision == 1.0 for fit in strict)


def _accuracy(router: SemanticRouter, examples: list[tuple[str, str]]) -> float:
    scores = router.score_matrix([text for text, _ in examples])
    names, limits = [r.name for r in router.routes], router.thresholds()
    right = 0
    for row, (_, label) in zip(scores, examples, strict=True):
        best = int(row.argmax())
        said = names[best] if row[best] >= limits[names[best]] else "other"
        right += said == label
    return right / len(examples)


def _config_file(tmp_path: Path, routing: dict[str, Any]) -> Path:
    workers = [{"name": n, "provider": "local", "model": n, "options": {"model": n}} for n in POOL]
    path = tmp_path / "podium.yaml"
    path.write_text(
        yaml.safe_dump({"data_dir": str(tmp_path), "workers": workers, "routing": routing})
    )
    return path


def test_the_fit_semantic_command_prints_thresholds(tmp_path: Path) -> None:
    config = _config_file(tmp_path, DEFAULTS)
    shipped = Path(__file__).resolve().parent.parent / "podium/data/routing/default_examples.jsonl"
    result = CliRunner().invoke(
        main,
        ["router", "fit-semantic", "--examples", str(shipped), "--config", str(config), "--json"],
    )
    assert result.exit_code == 0, result.output
    fits = {fit["route"]: fit for fit in json.loads(result.output)}
    assert set(fits) == {"code", "math", "extraction", "chat"}
    assert all(fit["f1"] >= 0.7 for fit in fits.values())


def test_the_route_command_explains_offline(tmp_path: Path) -> None:
    config = _config_file(tmp_path, DEFAULTS)
    runner = CliRunner()
    explained = runner.invoke(
        main, ["route", "What is 19 times 21?", "--config", str(config), "--explain"]
    )
    assert explained.exit_code == 0, explained.output
    assert "1. semantic  DECIDED: semantic route 'math'" in explained.output
    assert "2. direct" in explained.output and "would decide" in explained.output
    assert "decision: semantic:math -> qwen2.5-coder-1.5b" in explained.output
    as_json = runner.invoke(main, ["route", "", "--config", str(config), "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["decision"]["router"] == "direct"
    assert [r["router"] for r in data["routers"]] == ["semantic", "direct"]
    unknown = runner.invoke(main, ["route", "hi", "--config", str(config), "--model", "nope"])
    assert unknown.exit_code == 1 and "does not exist" in unknown.output
    contract = runner.invoke(
        main, ["route", "hi", "--config", str(config), "--model", "contract/ticket"]
    )
    assert contract.exit_code == 1 and "POST /v1/route" in contract.output
    unknown_class = runner.invoke(
        main, ["route", "hi", "--config", str(config), "--data-class", "secretish"]
    )
    assert unknown_class.exit_code == 2
    assert (
        "unknown data class 'secretish' (policy.classes: public, internal" in unknown_class.output
    )
