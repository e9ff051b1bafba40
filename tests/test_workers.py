"""Pricing a call's usage at a worker's configured prices, and estimating a request's input."""

from __future__ import annotations

from dataclasses import replace

import pytest

from podium.config import Price, WorkerConfig
from podium.media import request_media
from podium.types import ChatRequest, DocumentPart, Message, TextPart, Usage
from podium.workers import estimate_input_tokens, price_usage, prompt_tokens

PRICE = Price(input=3.0, output=15.0, cached_input=0.3)


def test_plain_usage_is_input_and_output_at_their_prices() -> None:
    assert price_usage(PRICE, Usage(1000, 100)) == pytest.approx((3000 + 1500) / 1e6)


def test_cache_reads_are_priced_at_the_cached_price() -> None:
    usage = Usage(1000, 100, cached_input_tokens=800)
    assert price_usage(PRICE, usage) == pytest.approx((200 * 3 + 800 * 0.3 + 1500) / 1e6)


def test_cache_writes_default_to_anthropics_premiums() -> None:
    five = Usage(1000, 0, cache_write_tokens=800)
    hour = Usage(1000, 0, cache_write_long_tokens=800)
    assert price_usage(PRICE, five) == pytest.approx((200 * 3 + 800 * 3.75) / 1e6)
    assert price_usage(PRICE, hour) == pytest.approx((200 * 3 + 800 * 6.0) / 1e6)


def test_configured_write_prices_replace_the_defaults() -> None:
    price = Price(input=3.0, output=15.0, cache_write=3.0, cache_write_long=4.5)
    usage = Usage(1000, 0, cache_write_tokens=500, cache_write_long_tokens=300)
    assert price_usage(price, usage) == pytest.approx((200 * 3 + 500 * 3.0 + 300 * 4.5) / 1e6)


def test_reads_writes_and_the_rest_add_up_in_one_call() -> None:
    usage = Usage(2000, 10, cached_input_tokens=1000, cache_write_tokens=600)
    expected = (400 * 3 + 1000 * 0.3 + 600 * 3.75 + 10 * 15) / 1e6
    assert price_usage(PRICE, usage) == pytest.approx(expected)


def test_the_input_estimate_counts_tool_calls_and_tool_definitions() -> None:
    from podium.types import Tool, ToolCall

    question = Message("user", [TextPart("write the file")])
    plain = ChatRequest("m", [question])
    written = "x" * 4000
    call = ToolCall("call_1", "write_file", '{"path": "a.txt", "text": "' + written + '"}')
    with_call = ChatRequest("m", [question, Message("assistant", [], tool_calls=[call])])
    tool = Tool("write_file", "Write a file", {"type": "object", "properties": {}})
    with_tool = ChatRequest("m", [question], tools=[tool])
    # a large tool call counts (about four characters a token), as a tool's definition does
    assert estimate_input_tokens(with_call) > estimate_input_tokens(plain) + 1000
    assert estimate_input_tokens(with_tool) > estimate_input_tokens(plain)


TIERED = Price(
    input=3.0,
    output=15.0,
    cached_input=0.3,
    tiers=[{"above": 200_000, "input": 6.0, "output": 22.5, "cached_input": 0.6}],  # type: ignore[list-item]
)


def test_a_long_prompt_is_priced_whole_at_its_tier() -> None:
    short = Usage(200_000, 1000)
    long = Usage(200_001, 1000, cached_input_tokens=100_000)
    assert price_usage(TIERED, short) == pytest.approx((200_000 * 3 + 1000 * 15) / 1e6)
    expected = (100_001 * 6 + 100_000 * 0.6 + 1000 * 22.5) / 1e6
    assert price_usage(TIERED, long) == pytest.approx(expected)


def test_a_tier_leaves_unset_rates_at_the_base_price() -> None:
    price = Price(input=1.25, output=10.0, tiers=[{"above": 100, "input": 2.5}])  # type: ignore[list-item]
    assert price_usage(price, Usage(1000, 1000)) == pytest.approx((1000 * 2.5 + 1000 * 10) / 1e6)
    # writes follow the tier's input price when the tier sets none of its own
    written = Usage(1000, 0, cache_write_tokens=1000)
    assert price_usage(price, written) == pytest.approx(1000 * 2.5 * 1.25 / 1e6)


def test_estimates_use_the_tier_too() -> None:
    from podium.workers import PlainRates, price_tokens

    rates = PlainRates.of(TIERED)
    assert price_tokens(rates, 300_000, 0) == pytest.approx(300_000 * 6 / 1e6)
    assert price_tokens(rates, 1000, 0) == pytest.approx(1000 * 3 / 1e6)
    assert price_tokens(TIERED, 300_000, 0) == price_tokens(rates, 300_000, 0)


def test_tiers_must_ascend() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ascending"):
        Price(input=1.0, tiers=[{"above": 500}, {"above": 100}])  # type: ignore[list-item]


def reading_pdfs(page_tokens: int | None = None) -> WorkerConfig:
    extra = {} if page_tokens is None else {"document_page_tokens": page_tokens}
    return WorkerConfig.model_validate(
        {"name": "reader", "provider": "gemini", "model": "m", "capabilities": ["documents"]}
        | extra
    )


def about_a_pdf(pages: int, text: str | None = "findings " * 100) -> ChatRequest:
    document = DocumentPart(data="JVBERi0=", filename="r.pdf", text=text, pages=pages)
    question = Message("user", [TextPart("Summarise it."), document])
    return ChatRequest("m", [question], attachments=True)


def test_a_worker_that_reads_pdfs_is_estimated_their_pages_images_too() -> None:
    plain = WorkerConfig(name="plain", provider="openai", model="m")
    request = about_a_pdf(50)
    assert estimate_input_tokens(request) > 225  # every worker reads ~900 characters of text
    assert request_media(request).tokens(plain) == 0  # it is sent the text alone
    assert request_media(request).tokens(reading_pdfs()) == 50 * 258
    assert request_media(request).tokens(reading_pdfs(1500)) == 50 * 1500
    assert prompt_tokens(request, reading_pdfs(1500)) == prompt_tokens(request, plain) + 75_000
    assert prompt_tokens(request, plain) == (len("Summarise it.") + 900 + 3) // 4
    # a scan has pages and no text; a PDF known only by URL was not read: no pages known
    assert request_media(about_a_pdf(3, None)).tokens(reading_pdfs()) == 3 * 258
    assert request_media(about_a_pdf(0, None)).tokens(reading_pdfs()) == 0
    # a request without attachments has no pages, whatever its parts
    assert request_media(replace(request, attachments=False)).tokens(reading_pdfs()) == 0
