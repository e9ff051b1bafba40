from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from podium.config import ConfigError, load_config
from podium.context import Caller
from podium.plugins import load_plugins
from podium.routing.base import Decision
from podium.routing.chain import build_routing
from podium.routing.registry import RouterRegistry
from podium.workflow import Step, Workflow
from tests.routing_helpers import ask, context, routing_for

WITH_EXAMPLES = "def double(x):\n    '''Twice x.\n    double(2) => 4\n    '''\n"


def rules(*entries: dict[str, Any], chain: list[str] | None = None) -> dict[str, Any]:
    return {"chain": chain or ["rules", "direct"], "rules": list(entries)}


# Workers that can take anything these tests send (images, a 1 MB prompt): what a rule matches
# is under test here; a worker that cannot answer is passed over (tests/test_routing_fit.py).
ABLE = {"capabilities": ["streaming", "tools", "vision"], "context_window": 1_000_000}


async def decide(routing_section: dict[str, Any], request: Any, **ctx: Any) -> Decision:
    routing = routing_for(routing_section, **ABLE)
    return await routing.decide(request, context(routing.parts.config, **ctx))


@pytest.mark.parametrize(
    ("match", "request_kwargs", "ctx"),
    [
        ({"model": ["gpt-4o"]}, {"model": "gpt-4o"}, {}),
        ({"keywords": ["SQL", "database"]}, {"text": "help me with a sql query"}, {}),
        ({"regex": [r"\bdef \w+\("]}, {"text": "def main():\n    pass"}, {}),
        ({"tools": True}, {"tools": True}, {}),
        ({"images": True}, {"image": True}, {}),
        ({"max_tokens": 5}, {"text": "short"}, {}),
        ({"min_tokens": 100}, {"text": "word " * 200}, {}),
        ({"data_class": ["confidential"]}, {}, {"data_class": "confidential"}),
        ({"contract": ["invoice-v1"]}, {}, {"contract": "invoice-v1"}),
        ({"headers": {"X-Team": "^search$"}}, {}, {"headers": {"x-team": "search"}}),
        ({"headers": {"x-priority": "*"}}, {}, {"headers": {"x-priority": "anything"}}),
        ({"caller": {"owner": "acme"}}, {}, {"caller": Caller(owner="acme")}),
        ({"caller": {"tier": "gold"}}, {}, {"caller": Caller(metadata={"tier": "gold"})}),
        ({"keywords": ["代码"]}, {"text": "请帮我写代码"}, {}),
        ({"text": "all", "keywords": ["pirate"]}, {"system": "talk like a pirate"}, {}),
        ({"code_examples": True}, {"text": WITH_EXAMPLES}, {}),
        ({"code_examples": False}, {"text": "def f(x):\n    '''Double x.'''\n"}, {}),
    ],
)
async def test_each_condition_sends_matching_requests_to_the_rule_target(
    match: dict[str, Any], request_kwargs: dict[str, Any], ctx: dict[str, Any]
) -> None:
    section = rules({"name": "special", "match": match, "worker": "qwen2.5-coder-1.5b"})
    decision = await decide(section, ask(**{"text": "hello", **request_kwargs}), **ctx)
    assert decision.route == "rules:special"
    assert decision.workflow.workers == ["qwen2.5-coder-1.5b"]
    assert "special" in decision.reason


@pytest.mark.parametrize(
    ("match", "request_kwargs", "ctx"),
    [
        ({"model": ["gpt-4o"]}, {}, {}),
        ({"keywords": ["sql"]}, {"text": "mysqlish words"}, {}),  # whole words only
        ({"keywords": ["sql"]}, {"text": "plain", "system": "sql"}, {}),  # last user text only
        ({"tools": True}, {}, {}),
        ({"images": False}, {"image": True}, {}),
        ({"max_tokens": 5}, {"text": "word " * 50}, {}),
        ({"headers": {"x-team": "^search$"}}, {}, {"headers": {"x-team": "research"}}),
        ({"caller": {"owner": "acme"}}, {}, {}),
        ({"keywords": ["sql"], "tools": True}, {"text": "sql"}, {}),  # every condition must hold
        ({"code_examples": True}, {"text": "def f(x):\n    '''f(2) is 4, roughly'''\n"}, {}),
        ({"code_examples": False}, {"text": WITH_EXAMPLES}, {}),
    ],
)
async def test_requests_that_miss_a_condition_fall_through(
    match: dict[str, Any], request_kwargs: dict[str, Any], ctx: dict[str, Any]
) -> None:
    section = rules({"name": "special", "match": match, "worker": "qwen2.5-coder-1.5b"})
    decision = await decide(section, ask(**{"text": "hello", **request_kwargs}), **ctx)
    assert decision.router == "direct"


async def test_the_first_matching_rule_wins_and_is_named() -> None:
    section = rules(
        {"name": "code", "match": {"keywords": ["python"]}, "worker": "qwen2.5-coder-1.5b"},
        {"name": "anything", "worker": "qwen2.5-coder-0.5b"},
    )
    assert (await decide(section, ask("python please"))).rule == "code"
    fallback = await decide(section, ask("hello"))
    assert fallback.rule == "anything"
    assert fallback.workflow.workers == ["qwen2.5-coder-0.5b"]


async def test_a_rule_can_name_a_worker_by_alias_and_give_fallbacks_and_a_reason() -> None:
    section = rules(
        {
            "name": "vip",
            "worker": "qwen2.5-coder-1.5b-alias",
            "fallbacks": ["smollm2-135m"],
            "reason": "VIP traffic goes to the strongest worker",
        }
    )
    decision = await decide(section, ask())
    assert decision.workflow.workers == ["qwen2.5-coder-1.5b"]
    assert decision.workflow.fallbacks == ["smollm2-135m"]
    assert decision.reason == "VIP traffic goes to the strongest worker"


async def test_a_rule_whose_worker_is_not_eligible_is_passed_over() -> None:
    section = rules(
        {"name": "strong", "worker": "qwen2.5-coder-1.5b"},
        {"name": "small", "worker": "smollm2-135m"},
    )
    decision = await decide(section, ask(), eligible=["smollm2-135m"])
    assert decision.rule == "small"
    assert "strong" in decision.reason and "not eligible" in decision.reason


async def test_a_rule_can_send_to_a_workflow_template() -> None:
    section = rules(
        {
            "name": "careful",
            "workflow": {"template": "single", "workers": ["qwen2.5-coder-1.5b", "smollm2-135m"]},
        }
    )
    decision = await decide(section, ask())
    assert decision.workflow.template == "single"
    assert decision.workflow.workers == ["qwen2.5-coder-1.5b"]
    assert decision.workflow.fallbacks == ["smollm2-135m"]


async def test_templates_registered_by_a_plugin_are_usable_from_rules() -> None:
    def two_step(workers: Sequence[str], options: Mapping[str, Any]) -> Workflow:
        return Workflow(
            steps=[
                Step(worker=workers[0], role="solve"),
                Step(worker=workers[-1], role="verify", instruction=str(options.get("check"))),
            ],
            template="solve-verify",
        )

    plugin = ModuleType("two_step_plugin")

    def register_routers(registry: RouterRegistry) -> None:
        registry.templates.register("solve-verify", two_step)

    plugin.register_routers = register_routers  # type: ignore[attr-defined]
    section = rules(
        {
            "name": "checked",
            "workflow": {
                "template": "solve-verify",
                "workers": ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"],
                "options": {"check": "is it right?"},
            },
        }
    )
    routing = routing_for(section, [plugin])
    decision = await routing.decide(ask(), context(routing.parts.config))
    assert [s.role for s in decision.workflow.steps] == ["solve", "verify"]
    assert decision.workflow.steps[1].instruction == "is it right?"


async def test_a_rule_can_hand_the_request_to_another_router() -> None:
    section = rules(
        {"name": "auto", "match": {"model": ["podium/auto"]}, "router": "direct"},
        {"name": "never", "worker": "qwen2.5-coder-1.5b"},
    )
    decision = await decide(section, ask(model="podium/auto"))
    assert decision.route == "rules:auto"
    assert "router 'direct' chose" in decision.reason
    assert decision.workflow.workers == ["smollm2-135m"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "bad-re", "match": {"regex": ["(unclosed"]}, "worker": "smollm2-135m"}, "bad-re"),
        ({"name": "ghost", "worker": "no-such-worker"}, "no-such-worker"),
        ({"name": "tpl", "workflow": {"template": "nope", "workers": ["smollm2-135m"]}}, "nope"),
        ({"name": "loop", "router": "rules"}, "loop"),
        ({"name": "who", "router": "no-such-router"}, "no-such-router"),
        (
            {
                "name": "range",
                "match": {"min_tokens": 9, "max_tokens": 2},
                "worker": "smollm2-135m",
            },
            "range",
        ),
    ],
)
def test_bad_rules_are_config_errors_naming_the_rule(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        routing_for(rules(entry))


def test_a_rule_needs_exactly_one_target() -> None:
    with pytest.raises(ConfigError, match="exactly one of worker, workflow or router"):
        routing_for(rules({"name": "two", "worker": "smollm2-135m", "router": "direct"}))


async def test_keywords_and_patterns_read_a_bounded_window_of_huge_prompts() -> None:
    section = rules(
        {"name": "tail", "match": {"keywords": ["needle"]}, "worker": "qwen2.5-coder-1.5b"}
    )
    huge = "x " * 500_000 + "needle"
    decision = await decide(section, ask(huge))
    assert decision.rule == "tail"  # the tail of the text is read
    middle = "x " * 250_000 + "needle " + "x " * 250_000
    assert (await decide(section, ask(middle))).router == "direct"


EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "routing.yaml"


async def test_the_example_routing_config_builds_and_routes() -> None:
    config = load_config(EXAMPLE, env={})
    routing = build_routing(config, load_plugins(third_party=False))
    assert [router.name for router in routing.routers] == [
        "rules",
        "affinity",
        "semantic",
        "direct",
    ]
    expected = {
        "SELECT name FROM users WHERE id = 3": "rules:sql-query",
        "hi": "rules:tiny",
        "What is 17 x 23?": "semantic:math",
        "Translate this paragraph into Italian please": "semantic:translation",
    }
    for prompt, route in expected.items():
        decision = await routing.decide(ask(prompt), context(config))
        assert decision.route == route, (prompt, decision.reason)


async def test_a_rule_can_send_to_the_shipped_cascade_template() -> None:
    section = rules(
        {
            "name": "careful",
            "match": {"keywords": ["prove"]},
            "workflow": {"template": "cascade", "workers": ["smollm2-135m", "qwen2.5-coder-1.5b"]},
        }
    )
    decision = await decide(section, ask("prove that the square root of 2 is irrational"))
    assert decision.route == "rules:careful"
    assert decision.workflow.template == "cascade"
    assert decision.workflow.workers[0] == "smollm2-135m"
    assert decision.workflow.workers[-1] == "qwen2.5-coder-1.5b"
