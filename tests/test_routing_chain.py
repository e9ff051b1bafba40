from __future__ import annotations

import asyncio
from types import ModuleType
from typing import Any

import openai
import pytest

from podium.config import ConfigError
from podium.errors import PodiumError
from podium.routing.base import Candidate, Decision, RouteContext
from podium.routing.chain import Verdict, decide
from podium.routing.registry import RouterParts, RouterRegistry
from podium.testing.openai_fake import FakeOpenAI
from podium.types import ChatRequest
from podium.workflow import Workflow
from tests.conftest import worker
from tests.routing_helpers import POOL, ask, context, routing_for


class Boom:
    name = "boom"

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        raise RuntimeError("the model file is corrupt")


class Hang:
    name = "hang"

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        await asyncio.sleep(3600)
        return None


class Rogue:
    """Plans a worker that policy did not clear."""

    name = "rogue"

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        return Decision(Workflow.single("not-eligible"), router=self.name, reason="trust me")


class Fixed:
    name = "fixed"

    def __init__(self, worker: str) -> None:
        self.worker = worker

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        return Decision(
            Workflow.single(self.worker),
            router=self.name,
            reason=f"always {self.worker}",
            candidates=[Candidate(self.worker, 0.5)],
        )


class Refuse:
    name = "refuse"

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        raise PodiumError("permission", "this caller may not use that", code="refused")


def plugin() -> ModuleType:
    """A third-party plugin module, as the ``podium.plugins`` entry-point group would load."""
    module = ModuleType("third_party_routers")

    def register_routers(registry: RouterRegistry) -> None:
        registry.register("boom", lambda section, parts: Boom())
        registry.register("hang", lambda section, parts: Hang())
        registry.register("rogue", lambda section, parts: Rogue())
        registry.register("refuse", lambda section, parts: Refuse())

        def fixed(section: Any, parts: RouterParts) -> Fixed:
            return Fixed((section or {}).get("worker", "qwen2.5-coder-0.5b"))

        registry.register("fixed", fixed)

    module.register_routers = register_routers  # type: ignore[attr-defined]
    return module


def chain(*names: str, **extra: Any) -> Any:
    return routing_for({"chain": list(names), "timeout_ms": 50, **extra}, [plugin()])


async def test_a_third_party_router_named_in_the_chain_decides() -> None:
    routing = chain("fixed", "direct")
    decision = await routing.decide(ask(), context(routing.parts.config))
    assert decision.route == "fixed"
    assert decision.workflow.workers == ["qwen2.5-coder-0.5b"]


async def test_a_second_instance_of_a_kind_has_its_own_name_and_section() -> None:
    routing = chain(
        "big", "direct", routers={"big": {"type": "fixed", "worker": "qwen2.5-coder-1.5b"}}
    )
    decision = await routing.decide(ask(), context(routing.parts.config))
    assert decision.router == "big"
    assert decision.workflow.workers == ["qwen2.5-coder-1.5b"]


@pytest.mark.parametrize(
    ("broken", "said"),
    [
        ("boom", "RuntimeError: the model file is corrupt"),
        ("hang", "longer than its budget of 50 ms"),
    ],
)
async def test_a_router_that_fails_or_hangs_is_skipped_with_the_reason_recorded(
    broken: str, said: str
) -> None:
    routing = chain(broken, "fixed")
    trail: list[Verdict] = []
    decision = await routing.decide(ask(), context(routing.parts.config), trail=trail)
    assert decision.router == "fixed"
    assert said in decision.reason
    assert [v.outcome for v in trail] == ["failed" if broken == "boom" else "timeout", "decided"]


@pytest.mark.parametrize("broken", ["boom", "hang", "rogue"])
async def test_when_no_router_decides_after_a_failure_the_default_worker_answers(
    broken: str,
) -> None:
    routing = chain(broken)
    decision = await routing.decide(ask(model="smollm2-135m"), context(routing.parts.config))
    assert decision.router == "fallback"
    assert decision.workflow.workers == ["smollm2-135m"]  # the configured default worker
    assert f"router {broken!r}" in decision.reason


async def test_a_decision_outside_the_eligible_workers_is_never_used() -> None:
    routing = chain("rogue", "fixed")
    decision = await routing.decide(ask(), context(routing.parts.config))
    assert decision.router == "fixed"
    assert "invalid workflow" in decision.reason


async def test_the_default_worker_must_itself_be_eligible() -> None:
    routing = chain("boom")
    decision = await routing.decide(
        ask(), context(routing.parts.config, eligible=["qwen2.5-coder-1.5b"])
    )
    assert decision.workflow.workers == ["qwen2.5-coder-1.5b"]


async def test_a_deliberate_refusal_reaches_the_caller() -> None:
    routing = chain("refuse", "direct")
    with pytest.raises(PodiumError, match="may not use"):
        await routing.decide(ask(), context(routing.parts.config))


async def test_an_unknown_model_with_no_failures_is_still_a_404() -> None:
    routing = chain("rules", "direct")
    with pytest.raises(PodiumError) as raised:
        await routing.decide(ask(model="no-such-model"), context(routing.parts.config))
    assert raised.value.status == 404


async def test_explaining_asks_every_router_without_changing_the_winner() -> None:
    routing = chain("fixed", "boom", "direct")
    trail: list[Verdict] = []
    decision = await routing.decide(ask(), context(routing.parts.config), trail=trail, ask_all=True)
    assert decision.router == "fixed"
    assert [(v.router, v.outcome) for v in trail] == [
        ("fixed", "decided"),
        ("boom", "failed"),
        ("direct", "decided"),
    ]
    assert "after" not in decision.reason  # failures after the winner do not taint it


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"chain": ["rules", "nope"]}, "unknown router 'nope'"),
        ({"chain": ["rules", "rules"]}, "chain names must be unique"),
        ({"chain": ["rules"], "bogus": 1}, "bogus"),
    ],
)
def test_chain_configuration_errors_are_clear(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        routing_for(section)


async def test_the_gateway_answers_through_the_fallback_when_a_router_breaks(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [worker(name, "openai", fake_openai.base_url) for name in POOL]
    routing = {"timeout_ms": 50}
    async with gateway(workers, routing=routing, default_worker="qwen2.5-coder-0.5b") as running:
        running.podium.gateway.routers[:] = [Boom(), Hang()]  # on this Podium only
        async with openai.AsyncOpenAI(base_url=running.v1, api_key="unused") as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="podium/auto", messages=[{"role": "user", "content": "hello"}]
            )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(raw.headers["x-podium-trace-id"])
    assert raw.headers["x-podium-worker"] == "qwen2.5-coder-0.5b"
    assert raw.headers["x-podium-route"] == "fallback"
    assert trace is not None and trace.router == "fallback" and trace.reason is not None
    assert "router 'boom' failed (RuntimeError: the model file is corrupt)" in trace.reason
    assert "router 'hang' took longer than its budget of 50 ms" in trace.reason


BAD_INPUTS = {
    "empty": "",
    "whitespace": " \n\t ",
    "huge_1mb": "lorem ipsum dolor " * 60_000,
    "chinese": "请用三句话解释量子纠缠，并给出一个日常生活中的类比。",
    "arabic": "اشرح لي كيف تعمل محركات البحث على الإنترنت",
    "hindi": "कृपया मुझे बताइए कि प्रकाश संश्लेषण कैसे काम करता है",
    "japanese": "このPythonコードのバグを直してください: def f(x): return x +",
    "russian": "Реши уравнение: 3x + 7 = 22",
    "emoji": "🙂🙃🤖🔥" * 100,
    "looks_easy": "This is trivially easy, just answer quickly: prove that there are "
    "infinitely many primes p such that p + 2 is also prime.",
    "looks_hard": "URGENT extremely difficult PhD-level expert question requiring deep "
    "reasoning: what is 2 + 2?",
    "keyword_stuffing": "python code sql math integral derivative json extract " * 200,
    "control_chars": "\x00\x01\x02 hello \x7f\u200b\u202e",
    "surrogate_like": "\ufffd" * 1000,
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
async def test_bad_input_always_gets_a_valid_decision_within_budget(name: str) -> None:
    section = {
        "chain": ["rules", "affinity", "semantic", "direct"],
        "rules": [
            {"name": "sql", "match": {"keywords": ["sql"], "max_tokens": 2000}, "worker": POOL[1]},
            {"name": "tools", "match": {"tools": True}, "worker": POOL[2]},
        ],
        "semantic": {"use_default_routes": True},
    }
    routing = routing_for(section)
    config = routing.parts.config
    for model in ("podium/auto", "smollm2-135m"):
        trail: list[Verdict] = []
        decision = await routing.decide(
            ask(BAD_INPUTS[name], model=model), context(config), trail=trail
        )
        decision.workflow.validate({w.name for w in config.workers})
        assert decision.reason
        assert all(v.outcome in ("decided", "no_opinion", "not_asked") for v in trail), trail


def test_routers_from_the_entry_point_group_join_the_chain(
    monkeypatch: pytest.MonkeyPatch, make_config: Any
) -> None:
    from importlib.metadata import EntryPoint

    import podium.plugins
    from podium.app import create_podium

    module = plugin()

    class Entry(EntryPoint):
        def load(self) -> Any:
            return module

    entry = Entry(name="third", value="third_party_routers", group="podium.plugins")
    monkeypatch.setattr(podium.plugins, "entry_points", lambda group: [entry])
    workers = [{"name": n, "provider": "openai", "model": n, "base_url": "http://x"} for n in POOL]
    podium_ = create_podium(make_config(workers, routing={"chain": ["fixed", "direct"]}))
    assert [router.name for router in podium_.routers] == ["fixed", "direct"]


class Counting:
    """Decides only for the models it names in ``decides_for``; counts being asked."""

    name = "counting"

    def __init__(self, models: frozenset[str]) -> None:
        self.decides_for = models
        self.asked = 0

    async def plan(self, request: ChatRequest, context: RouteContext) -> Decision | None:
        self.asked += 1
        if request.model not in self.decides_for:
            return None
        return Decision(Workflow.single("smollm2-135m"), router=self.name, reason="counted")


async def test_a_router_is_not_asked_about_a_model_outside_its_decides_for() -> None:
    routing = chain("direct")
    counting = Counting(frozenset({"podium/auto"}))
    routers = [counting, *routing.routers]
    config = routing.parts.config

    async def route(model: str, trail: list[Verdict] | None = None) -> Decision:
        request = ask(model=model)
        return await decide(
            routers, request, context(config), budget_s=1.0, default_worker=None, trail=trail
        )

    assert ((await route("qwen2.5-coder-0.5b")).router, counting.asked) == ("direct", 0)
    assert ((await route("podium/auto")).router, counting.asked) == ("counting", 1)
    # An explanation still hears every router's verdict.
    trail: list[Verdict] = []
    await route("qwen2.5-coder-0.5b", trail)
    assert [(v.router, v.outcome) for v in trail] == [
        ("counting", "no_opinion"),
        ("direct", "decided"),
    ]


@pytest.mark.parametrize(
    "routing",
    [
        {},  # the default chain: no rules, affinity for podium/auto, no semantic routes
        {"affinity": {"enabled": False}},
        {"rules": [{"name": "any", "worker": "smollm2-135m"}]},
    ],
)
async def test_the_built_in_routers_decides_for_matches_what_they_plan(
    routing: dict[str, Any],
) -> None:
    built = routing_for(routing)
    config = built.parts.config
    for router in built.routers:
        decides_for = getattr(router, "decides_for", None)
        if decides_for is None:
            continue
        for model in ("podium/auto", "smollm2-135m", "smollm2-135m-alias"):
            if model not in decides_for:
                assert await router.plan(ask(model=model), context(config)) is None
