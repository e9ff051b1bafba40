"""Pricing a call's usage at a worker's configured prices."""

from __future__ import annotations

import pytest

from podium.config import Price
from podium.types import Usage
from podium.workers import price_usage

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
    from podium.types import ChatRequest, Message, TextPart, Tool, ToolCall
    from podium.workers import estimate_input_tokens

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
