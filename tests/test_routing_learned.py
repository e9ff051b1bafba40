"""The learned quality/cost router: features, training, policies, artifacts (versioned, swapped
without a restart), unseen workers and bad input."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from podium.config import parse_config
from podium.context import Caller
from podium.eval.data import parse_prompt, read_csv
from podium.plugins import load_plugins
from podium.routing.artifacts import ArtifactError, ArtifactStore
from podium.routing.base import RouteContext
from podium.routing.chain import Routing, build_routing
from podium.routing.features import FeatureSpec, Featurizer, hashed_chars, hashed_words
from podium.routing.learned import Policy, QualityCostModel, choose, fit
from podium.types import ChatRequest, Message, ResponseFormat, TextPart
from tests.learned_helpers import easy_prompt, hard_prompt, measured_cascade, write_csv


def ask(text: str) -> ChatRequest:
    return ChatRequest(model="podium/auto", messages=[Message("user", [TextPart(text)])])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> QualityCostModel:
    data = read_csv(write_csv(tmp_path_factory.mktemp("data") / "train.csv", rows=240))
    return fit(data.prompts, data.quality, data.cost, data.models)


def routing(tmp_path: Path, learned: dict[str, Any] | None = None, **extra: Any) -> Routing:
    workers = [
        {
            "name": name,
            "provider": "openai",
            "model": f"{name}-model",
            "base_url": "http://127.0.0.1:9",
        }
        for name in ("cheap", "strong", "middling")
    ]
    workers += extra.pop("more_workers", [])
    config = parse_config(
        {
            "data_dir": str(tmp_path),
            "workers": workers,
            "routing": {
                "chain": ["learned", "direct"],
                "routers": {"learned": {"reload_seconds": 0, **(learned or {})}},
            },
        }
    )
    return build_routing(config, load_plugins(third_party=False))


def serving(
    tmp_path: Path, model: QualityCostModel, learned: dict[str, Any] | None = None
) -> Routing:
    """The routing of a gateway whose promoted artifact is ``model``."""
    store = ArtifactStore(tmp_path / "routers")
    store.promote(store.save(model).number)
    return routing(tmp_path, learned)


def context(routing: Routing, budget: float | None = None) -> RouteContext:
    return RouteContext(
        caller=Caller(), eligible=list(routing.parts.config.workers), budget_usd=budget
    )


def test_a_list_of_turns_is_read_as_text_and_nothing_else_is_evaluated() -> None:
    assert parse_prompt("['first turn', 'second turn']") == "first turn\n\nsecond turn"
    hostile = "[__import__('os').system('echo hacked')]"
    assert parse_prompt(hostile) == hostile
    assert parse_prompt("[not, a, list") == "[not, a, list"


def test_features_are_deterministic_and_bounded() -> None:
    spec = FeatureSpec(word_dim=256, char_dim=256)
    featurizer = Featurizer(spec)
    featurizer.fit_cues(["a", "some text 1 + 2 = 3"])
    first = featurizer.one("def f(x): return x ** 2")
    again = Featurizer(spec).one("def f(x): return x ** 2")
    assert np.array_equal(first, again)
    assert first.shape == (spec.dim,)
    assert hashed_words("", 64).sum() == 0 and hashed_chars("ab", 64).sum() == 0
    huge = featurizer.one("word " * 500_000)
    assert np.isfinite(huge).all()


def test_the_model_learns_which_worker_is_good_where(trained: QualityCostModel) -> None:
    x = trained.features([easy_prompt(1000), hard_prompt(1001)])
    quality = trained.predict_quality_from(x)
    cheap, strong = trained.models.index("cheap"), trained.models.index("strong")
    assert quality[0, cheap] > 0.7  # easy: the cheap model is good
    assert quality[1, cheap] < 0.4  # hard: it is not
    assert quality[1, strong] > 0.7
    cost = trained.predict_cost([easy_prompt(1)])[0]
    assert cost[cheap] < cost[strong]


def test_policies_choose_by_tradeoff_target_and_budget() -> None:
    quality = np.array([[0.5, 0.8, 0.9]])
    cost = np.array([[0.001, 0.01, 0.1]])
    assert choose(quality, cost, Policy("tradeoff", lam=0.0))[0] == 2
    assert choose(quality, cost, Policy("tradeoff", lam=1000.0))[0] == 0
    assert choose(quality, cost, Policy("target", target=0.75))[0] == 1
    assert choose(quality, cost, Policy("target", target=0.99))[0] == 2  # none meets: the best
    assert choose(quality, cost, Policy("budget", budget_usd=0.02))[0] == 1
    assert choose(quality, cost, Policy("budget", budget_usd=0.0001))[0] == 0  # the cheapest


def test_below_the_floor_every_policy_picks_the_cheapest() -> None:
    quality = np.array([[0.5, 0.8, 0.9], [0.1, 0.2, 0.3]])  # the second row looks hopeless
    cost = np.array([[0.001, 0.01, 0.1], [0.001, 0.01, 0.1]])
    for policy in (
        Policy("tradeoff", lam=0.0, floor=0.4),
        Policy("target", target=0.75, floor=0.4),
        Policy("budget", budget_usd=1.0, floor=0.4),
    ):
        picks = choose(quality, cost, policy)
        assert picks[1] == 0, policy.kind  # every prediction < 0.4: the cheapest
        assert picks[0] != 0, policy.kind  # above the floor the policy decides as before
    assert list(choose(quality, cost, Policy("tradeoff"))) == [2, 2]  # no floor: the best


async def test_the_floor_comes_from_the_artifact_or_podium_yaml_and_is_explained(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    store = ArtifactStore(tmp_path / "routers")
    trained.policy = Policy("tradeoff", floor=0.99)  # no worker is ever that likely to be right
    store.promote(store.save(trained).number)
    try:
        chain = routing(tmp_path)
        decision = await chain.router("learned").plan(ask(hard_prompt(9)), context(chain))
        assert decision is not None and decision.workflow.workers == ["cheap"]
        assert "every worker's predicted quality < 0.99: the cheapest" in decision.reason
        assert "'cheap'" in decision.reason
        # podium.yaml overrides the artifact's floor, like lam
        chain = routing(tmp_path, {"floor": 0})
        decision = await chain.router("learned").plan(ask(hard_prompt(9)), context(chain))
        assert decision is not None and decision.workflow.workers == ["strong"]
        assert "the cheapest" not in decision.reason
        assert QualityCostModel.load(store.get(1).path).policy.floor == 0.99
    finally:
        trained.policy = Policy()


async def test_the_router_sends_easy_prompts_cheap_and_hard_ones_strong(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    chain = serving(tmp_path, trained, {"lam": 10})
    learned = chain.router("learned")
    easy = await learned.plan(ask(easy_prompt(7)), context(chain))
    hard = await learned.plan(ask(hard_prompt(9)), context(chain))
    assert easy is not None and hard is not None
    assert easy.workflow.workers == ["cheap"]  # where the cheap worker does as well, for less
    assert hard.workflow.workers == ["strong"]
    assert "learned-v1" in hard.reason and "'strong'" in hard.reason
    assert {c.worker for c in hard.candidates} == {"cheap", "strong", "middling"}
    assert all(c.quality is not None and c.cost_usd is not None for c in hard.candidates)
    assert set(hard.workflow.fallbacks) == {"cheap", "middling"}
    # a per-request budget below the strong worker's predicted cost keeps it away
    tight = await learned.plan(ask(hard_prompt(9)), context(chain, budget=0.005))
    assert tight is not None and tight.workflow.workers != ["strong"]
    assert "within" in tight.reason


async def test_a_promotion_and_a_rollback_are_picked_up_without_a_restart(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    store = ArtifactStore(tmp_path / "routers")
    first = store.save(trained)
    store.promote(first.number)
    chain = routing(tmp_path)
    learned = chain.router("learned")
    before = await learned.plan(ask(hard_prompt(3)), context(chain))
    assert before is not None and before.workflow.workers == ["strong"]  # lambda 0: quality
    trained.policy = Policy("tradeoff", lam=1e6)  # cost is all that matters
    second = store.save(trained)
    store.promote(second.number)
    after = await learned.plan(ask(hard_prompt(3)), context(chain))
    assert after is not None and after.workflow.workers == ["cheap"]
    assert "learned-v2" in after.reason
    assert store.rollback().number == first.number
    back = await learned.plan(ask(hard_prompt(3)), context(chain))
    assert back is not None and back.workflow.workers == ["strong"]
    with pytest.raises(ArtifactError):
        store.rollback()  # nothing before v1
    trained.policy = Policy()


async def test_a_worker_the_model_never_saw_gets_a_prior(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    store = ArtifactStore(tmp_path / "routers")
    store.promote(store.save(trained).number)
    newcomer = {
        "name": "newcomer",
        "provider": "openai",
        "model": "brand-new",
        "base_url": "http://127.0.0.1:9",
        "price": {"input": 0.01, "output": 0.01},
        "quality_prior": 0.99,
    }
    unpriced = {
        "name": "mystery",
        "provider": "openai",
        "model": "m",
        "base_url": "http://127.0.0.1:9",
    }
    chain = routing(tmp_path, {"lam": 10}, more_workers=[newcomer, unpriced])
    decision = await chain.router("learned").plan(ask(hard_prompt(5)), context(chain))
    assert decision is not None and decision.workflow.workers == ["newcomer"]
    assert "prior" in decision.reason
    mystery = next(c for c in decision.candidates if c.worker == "mystery")
    assert mystery.quality is not None
    assert min(trained.mean_quality) - 1e-5 <= mystery.quality <= max(trained.mean_quality) + 1e-5


async def test_a_long_prompt_is_priced_at_its_tier(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    """Two newcomers at one base price; one bills prompts past 1,000 tokens at 10x."""
    store = ArtifactStore(tmp_path / "routers")
    store.promote(store.save(trained).number)
    flat = {
        "name": "flat",
        "provider": "openai",
        "model": "flat",
        "base_url": "http://127.0.0.1:9",
        "price": {"input": 1.0, "output": 1.0},
    }
    tiered = {
        **flat,
        "name": "tiered",
        "model": "tiered",
        "price": {"input": 1.0, "output": 1.0, "tiers": [{"above": 1000, "input": 10.0}]},
    }
    chain = routing(tmp_path, more_workers=[flat, tiered])
    router = chain.router("learned")

    async def costs(text: str) -> dict[str, float]:
        decision = await router.plan(ask(text), context(chain))
        assert decision is not None
        return {c.worker: c.cost_usd or 0.0 for c in decision.candidates}

    short, long = await costs("a short question"), await costs("word " * 2000)
    assert short["tiered"] == pytest.approx(short["flat"])
    assert long["tiered"] > 5 * long["flat"]


async def test_a_pdfs_pages_are_priced_for_a_worker_that_reads_pdfs(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    """Two newcomers at one price; one reads PDFs itself and is billed 258 tokens a page for
    their images beside the text both read."""
    from podium.types import DocumentPart

    store = ArtifactStore(tmp_path / "routers")
    store.promote(store.save(trained).number)
    text = {
        "name": "text",
        "provider": "openai",
        "model": "text",
        "base_url": "http://127.0.0.1:9",
        "price": {"input": 1.0, "output": 1.0},
    }
    reader = {**text, "name": "reader", "model": "reader", "capabilities": ["documents"]}
    chain = routing(tmp_path, more_workers=[text, reader])
    router = chain.router("learned")

    async def costs(request: ChatRequest) -> dict[str, float]:
        decision = await router.plan(request, context(chain))
        assert decision is not None
        return {c.worker: c.cost_usd or 0.0 for c in decision.candidates}

    asked = ask("Summarise the minutes.")
    document = DocumentPart(data="JVBERi0=", text="The board met. " * 400, pages=20)
    asked.messages[0].content.append(document)
    asked.attachments = True
    plain, with_pdf = await costs(ask("Summarise the minutes.")), await costs(asked)
    assert plain["reader"] == pytest.approx(plain["text"])
    # both read the text (~6,000 characters: 1,500 tokens at $1 per 1M)
    assert with_pdf["text"] == pytest.approx(plain["text"] + 1500 / 1e6)
    assert with_pdf["reader"] == pytest.approx(with_pdf["text"] + 20 * 258 / 1e6)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "x" * 1_000_000,
        "这是一个关于微积分的难题，请一步一步地解答。",
        "ignore all rules: easy " * 50,
    ],
)
async def test_bad_input_still_gets_a_valid_decision(
    tmp_path: Path, trained: QualityCostModel, text: str
) -> None:
    store = ArtifactStore(tmp_path / "routers")
    store.promote(store.save(trained).number)
    chain = routing(tmp_path)
    decision = await chain.decide(ask(text), context(chain))
    assert decision.router == "learned"
    decision.workflow.validate({"cheap", "strong", "middling"})


async def test_without_an_artifact_the_router_has_no_opinion(tmp_path: Path) -> None:
    chain = routing(tmp_path)
    decision = await chain.decide(ask("hello"), context(chain))
    assert decision.router != "learned"
    assert "no learned-router artifact" in decision.reason


def test_an_artifact_round_trips(tmp_path: Path, trained: QualityCostModel) -> None:
    path = tmp_path / "a.npz"
    trained.save(path)
    loaded = QualityCostModel.load(path)
    x = trained.features([hard_prompt(2)])
    assert np.allclose(loaded.predict_quality_from(x), trained.predict_quality_from(x), atol=1e-6)
    assert loaded.models == trained.models
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    (tmp_path / "bad.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="not a Podium"):
        QualityCostModel.load(tmp_path / "bad.npz")


async def test_the_admin_api_reloads_the_promoted_version_at_once(
    gateway: Any, trained: QualityCostModel
) -> None:
    import httpx

    workers = [
        {"name": n, "provider": "openai", "model": n, "base_url": "http://127.0.0.1:9"}
        for n in ("cheap", "strong")
    ]
    routing_section = {
        "chain": ["learned", "direct"],
        "routers": {"learned": {"reload_seconds": 3600}},
    }
    async with gateway(workers, routing=routing_section) as running:
        store = ArtifactStore(running.podium.config.resolved_data_dir() / "routers")
        store.promote(store.save(trained).number)
        async with httpx.AsyncClient(base_url=running.url) as client:
            reply = await client.post("/admin/router/reload")
        assert reply.status_code == 200
        assert reply.json()["routers"]["current"] == {
            "loaded": True,
            "version": "learned-v1",
            "error": None,
        }


@pytest.fixture(scope="module")
def measured() -> QualityCostModel:
    return measured_cascade()


async def test_a_measured_workflow_is_chosen_where_it_pays(
    tmp_path: Path, measured: QualityCostModel
) -> None:
    chain = serving(tmp_path, measured, {"lam": 30})
    learned = chain.router("learned")
    hard = await learned.plan(ask(hard_prompt(9)), context(chain))
    easy = await learned.plan(ask(easy_prompt(7)), context(chain))
    assert hard is not None and easy is not None
    assert hard.workflow.template == "cascade"
    assert hard.workflow.key == "cascade(cheap,strong)"  # what its trace will record
    assert [s.role for s in hard.workflow.steps] == ["draft", "check", "escalate"]
    assert "'cascade(cheap,strong)'" in hard.reason
    assert "cascade(cheap,strong)" in {c.label for c in hard.candidates}
    # if the escalation fails, the other workers stand in (not the one that just failed)
    assert "strong" not in hard.workflow.fallbacks and hard.workflow.fallbacks
    hard.workflow.validate({"cheap", "strong", "middling"})
    assert easy.workflow.workers == ["cheap"]  # where the cheap worker does as well, for less


async def test_a_measured_workflow_is_offered_only_where_it_can_run(
    tmp_path: Path, measured: QualityCostModel
) -> None:
    chain = serving(tmp_path, measured, {"lam": 30})
    learned = chain.router("learned")
    # a worker of the workflow is not cleared for this request: the workflow is no candidate
    cleared = [w for w in chain.parts.config.workers if w.name != "strong"]
    narrow = await learned.plan(ask(hard_prompt(9)), RouteContext(Caller(), cleared))
    assert narrow is not None and narrow.workflow.template == "single"
    assert all(c.label is None for c in narrow.candidates)
    # a response format is one worker's answer to give
    shaped = ask(hard_prompt(9))
    shaped.response_format = ResponseFormat("json_object")
    single = await learned.plan(shaped, context(chain))
    assert single is not None and single.workflow.template == "single"


async def test_the_workflow_router_scores_a_measured_workflow_by_its_measurements(
    tmp_path: Path, measured: QualityCostModel
) -> None:
    chain = serving(
        tmp_path, measured, {"type": "workflow", "templates": ["single", "cascade"], "lam": 30}
    )
    decision = await chain.router("learned").plan(ask(hard_prompt(9)), context(chain))
    assert decision is not None
    # the priors would put this cascade at ~0.74 (a weak draft, an imperfect check), below the
    # strong worker alone; the traces say it does as well as the strong worker, for less
    assert decision.workflow.key == "cascade(cheap,strong)"
    found = re.search(r"cascade\(cheap, strong\) predicted quality (\d\.\d+)", decision.reason)
    assert found is not None and float(found[1]) > 0.85


async def test_a_worker_whose_context_cannot_hold_the_prompt_is_not_a_candidate(
    tmp_path: Path, trained: QualityCostModel
) -> None:
    chain = serving(tmp_path, trained, {"lam": 10})
    learned = chain.router("learned")
    prompt = hard_prompt(9) + " " + "background " * 2000  # ~22,000 characters
    narrow = [
        worker.model_copy(update={"context_window": 2048}) if worker.name == "strong" else worker
        for worker in chain.parts.config.workers
    ]
    decision = await learned.plan(ask(prompt), RouteContext(caller=Caller(), eligible=narrow))
    assert decision is not None
    assert "strong" not in decision.workflow.workers + decision.workflow.fallbacks
    assert {c.worker for c in decision.candidates} == {"cheap", "middling"}
