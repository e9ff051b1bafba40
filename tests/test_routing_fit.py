"""Which workers can take a request: the capabilities it needs and a context window that holds
its prompt; ``podium/auto`` passes over a default that cannot take it, and a rule or a route
over a worker that surely cannot answer."""

from __future__ import annotations

from typing import Any

import openai

from podium.config import WorkerConfig
from podium.context import Caller
from podium.routing.base import RouteContext
from podium.routing.direct import DirectRouter
from podium.routing.fit import fewest_tokens, fits, fitting, needs
from podium.testing.openai_fake import FakeOpenAI
from podium.testing.pdf import pdf_base64
from podium.types import ChatRequest, DocumentPart, ImagePart, Message, TextPart, Tool
from tests.conftest import worker as conftest_worker


def worker(name: str, window: int = 8192, *capabilities: str) -> WorkerConfig:
    return WorkerConfig.model_validate(
        {
            "name": name,
            "provider": "openai",
            "model": name,
            "base_url": "http://127.0.0.1:9/v1",
            "context_window": window,
            "capabilities": ["streaming", *capabilities],
        }
    )


def ask(text: str = "hi", *, image: bool = False, tools: bool = False, **extra: Any) -> ChatRequest:
    content: list[TextPart | ImagePart] = [TextPart(text)]
    if image:
        content.append(ImagePart(data="AAAA", media_type="image/png"))
    return ChatRequest(
        model="podium/auto",
        messages=[Message("user", content)],
        tools=[Tool("lookup", "", {"type": "object"})] if tools else [],
        **extra,
    )


def test_a_request_needs_tools_for_tool_definitions_and_vision_for_images() -> None:
    assert needs(ask()) == frozenset()
    assert needs(ask(tools=True)) == {"tools"}
    assert needs(ask(image=True, tools=True)) == {"tools", "vision"}


def test_a_prompt_is_too_long_only_when_it_surely_is() -> None:
    small = worker("small", 1000)
    assert fits(ask("word " * 1000), small)  # ~1,000 tokens by any count: not surely too long
    assert not fits(ask("x" * 6000), small)  # at least 1,000 tokens however it is cut
    assert fewest_tokens(ask("x" * 6000)) == 1000


def test_fitting_keeps_the_workers_that_can_take_it_or_all_when_none_can() -> None:
    small, large, eye = (
        worker("small", 1000),
        worker("large", 100_000),
        worker("eye", 8192, "vision"),
    )
    assert fitting(ask("x" * 60_000), [small, large, eye]) == [large]
    assert fitting(ask(image=True), [small, large, eye]) == [eye]
    # none reads images and holds this prompt: all stay, and the upstream says what is wrong
    assert fitting(ask("x" * 600_000, image=True), [small, eye]) == [small, eye]


async def test_podium_auto_passes_over_a_default_that_cannot_take_the_request() -> None:
    pool = [worker("small", 1000), worker("large", 100_000), worker("eye", 8192, "vision")]
    router = DirectRouter({}, "small")
    context = RouteContext(caller=Caller(), eligible=pool)
    plain = await router.plan(ask(), context)
    long = await router.plan(ask("x" * 60_000), context)
    seeing = await router.plan(ask(image=True), context)
    hopeless = await router.plan(ask("x" * 600_000, image=True), context)
    assert plain is not None and plain.workflow.workers == ["small"]
    assert long is not None and long.workflow.workers == ["large"]
    assert long.reason == "podium/auto goes to 'large': the default 'small' cannot take it"
    assert seeing is not None and seeing.workflow.workers == ["eye"]
    assert hopeless is not None and hopeless.workflow.workers == ["small"]  # none can: the default


async def test_a_rule_or_route_passes_over_a_worker_that_surely_cannot_answer(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    workers = [
        {**conftest_worker("small", "openai", fake_openai.base_url), "context_window": 1000},
        {**conftest_worker("large", "openai", fake_openai.base_url), "context_window": 100_000},
    ]
    routing = {
        "chain": ["rules", "direct"],
        "rules": [
            {"name": "to-small", "match": {"model": ["podium/auto"]}, "worker": "small"},
            {"name": "to-large", "match": {"model": ["podium/auto"]}, "worker": "large"},
        ],
    }
    async with (
        gateway(workers, routing=routing) as running,
        openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client,
    ):
        short = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": "hi"}]
        )
        long = await client.chat.completions.with_raw_response.create(
            model="podium/auto", messages=[{"role": "user", "content": "x" * 60_000}]
        )
        await running.podium.recorder.flush()
        trace = await running.podium.store.get_trace(long.headers["x-podium-trace-id"])
    assert short.headers["x-podium-worker"] == "small"
    assert long.headers["x-podium-worker"] == "large"
    assert trace is not None
    assert "passed over: rule 'to-small': worker 'small' has a 1000-token context window" in (
        trace.reason
    )


def about_a_pdf(pages: int) -> ChatRequest:
    """A question about a PDF of ``pages`` pages, read: a short line of text each."""
    text = "\n".join(f"Page {page} of the annual report." for page in range(pages))
    document = DocumentPart(data="JVBERi0=", filename="annual.pdf", text=text, pages=pages)
    question = Message("user", [TextPart("Summarise it."), document])
    return ChatRequest("podium/auto", [question], attachments=True)


def test_a_worker_that_reads_pdfs_must_hold_their_pages_images_too() -> None:
    # 200 pages of ~30 characters: ~1,000 tokens of text at least, and 200 page images.
    request = about_a_pdf(200)
    plain = worker("plain", 32_000)
    native = worker("native", 32_000, "documents")  # 258 tokens a page: 51,600 more
    roomy = worker("roomy", 64_000, "documents")
    text = fewest_tokens(request)
    assert fewest_tokens(request, plain) == text < 1_100
    assert fewest_tokens(request, native) == text + 200 * 258
    assert fits(request, plain) and not fits(request, native) and fits(request, roomy)
    assert fitting(request, [native, plain, roomy]) == [plain, roomy]
    # a few pages fit either way
    assert fitting(about_a_pdf(20), [native, plain]) == [native, plain]
    # a worker's own figure for a page counts instead of the default
    dear = WorkerConfig.model_validate(
        {**native.model_dump(), "name": "dear", "document_page_tokens": 2000}
    )
    assert fits(about_a_pdf(12), native) and not fits(about_a_pdf(20), dear)


async def test_a_worker_that_reads_pdfs_is_passed_over_when_their_pages_overflow_it(
    gateway: Any, fake_openai: FakeOpenAI
) -> None:
    """A 200-page PDF: its text fits both windows, its 200 page images only the roomy one's.
    ``podium/auto`` goes past the default that reads PDFs itself to the one sent the text, and
    a rule naming the PDF reader is passed over, saying why."""
    pdf = pdf_base64(["The committee approved the budget."] * 200)
    small = {"context_window": 32_000}
    workers = [
        {**conftest_worker("reader", "openai", fake_openai.base_url), **small,
         "capabilities": ["streaming", "documents"]},
        {**conftest_worker("plain", "openai", fake_openai.base_url), **small},
    ]  # fmt: skip
    routing = {
        "chain": ["rules", "direct"],
        "rules": [
            {"name": "pdfs", "match": {"model": ["podium/auto"]}, "worker": "reader"},
            {"name": "text", "match": {"model": ["podium/auto"]}, "worker": "plain"},
        ],
    }
    content = [
        {"type": "text", "text": "Summarise it."},
        {"type": "file", "file": {"filename": "annual.pdf", "file_data": pdf}},
    ]
    reasons = []
    for settings in ({}, {"routing": routing}):
        async with (
            gateway(
                workers, default_worker="reader", documents={"max_pages": 200}, **settings
            ) as running,
            openai.AsyncOpenAI(base_url=running.v1, api_key="x", max_retries=0) as client,
        ):
            answer = await client.chat.completions.with_raw_response.create(
                model="podium/auto", messages=[{"role": "user", "content": content}]
            )
            await running.podium.recorder.flush()
            trace = await running.podium.store.get_trace(answer.headers["x-podium-trace-id"])
        assert answer.headers["x-podium-worker"] == "plain"
        assert trace is not None
        reasons.append(trace.reason)
    assert reasons[0] == "podium/auto goes to 'plain': the default 'reader' cannot take it"
    assert (
        "(passed over: rule 'pdfs': worker 'reader' has a 32000-token context window; the "
        "prompt has at least " in reasons[1]
    )
    assert "(51600 of them its images and PDF pages)" in reasons[1]
    # the worker was sent the text: no file went upstream
    for received in fake_openai.received:
        sent = received.body["messages"][-1]["content"]
        assert isinstance(sent, str)  # text parts alone go as one string
        assert sent.count("approved the budget") == 200
    assert len(fake_openai.received) == 2


def cited_pdf(*, cite: bool = True) -> ChatRequest:
    document = DocumentPart(data=pdf_base64(["Minutes."]), text="Minutes.", pages=1)
    document.citations = cite
    return ChatRequest(
        model="podium/auto",
        messages=[Message("user", [document, TextPart("What was decided?")])],
        attachments=True,
    )


async def test_a_document_to_be_cited_goes_to_a_worker_that_cites_when_one_can_take_it() -> None:
    plain, citing = worker("plain", 8192, "documents"), worker("citing", 8192, "citations")
    router = DirectRouter({}, "plain")
    context = RouteContext(caller=Caller(), eligible=[plain, citing])
    cited = await router.plan(cited_pdf(), context)
    uncited = await router.plan(cited_pdf(cite=False), context)
    assert cited is not None and cited.workflow.workers == ["citing"]
    assert cited.reason == "podium/auto goes to 'citing': the default 'plain' cites no documents"
    assert uncited is not None and uncited.workflow.workers == ["plain"]
    # The routers that choose by quality and cost choose among the workers that cite...
    assert fitting(cited_pdf(), [plain, citing]) == [citing]
    assert fitting(cited_pdf(cite=False), [plain, citing]) == [plain, citing]
    # ...and, when none does, among those that can take it: answered without citations.
    alone = RouteContext(caller=Caller(), eligible=[plain, worker("other", 8192, "documents")])
    kept = await router.plan(cited_pdf(), alone)
    assert kept is not None and kept.workflow.workers == ["plain"]
    assert fitting(cited_pdf(), [plain]) == [plain]
