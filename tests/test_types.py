from collections.abc import AsyncIterator

from podium.types import (
    ChatRequest,
    ChatResponse,
    Citation,
    CitationDelta,
    CitedSpan,
    ImagePart,
    Message,
    StreamEvent,
    TextDelta,
    TextPart,
    collect,
    passages,
    spans_of,
)


def request(*messages: Message) -> ChatRequest:
    return ChatRequest(model="m", messages=list(messages))


def test_a_message_text_joins_its_text_parts_and_skips_images() -> None:
    single = Message("user", [TextPart("hello")])
    mixed = Message("user", [TextPart("look "), ImagePart(url="http://x/y.png"), TextPart("here")])
    empty = Message("assistant")
    assert single.text() == "hello"
    assert mixed.text() == "look here"
    assert empty.text() == ""
    assert [m.text_length() for m in (single, mixed, empty)] == [5, 9, 0]


def test_prompt_length_is_the_length_of_the_prompt_text_without_building_it() -> None:
    cases = [
        request(),
        request(Message("user", [TextPart("é∂ 漢字")])),
        request(
            Message("system", [TextPart("be brief")]),
            Message("user", [TextPart("a"), ImagePart(data="AAAA", media_type="image/png")]),
            Message("assistant", tool_calls=[]),
            Message("user", [TextPart("two "), TextPart("parts")]),
        ),
    ]
    for case in cases:
        assert case.prompt_length() == len(case.prompt_text())


def test_a_breakpoint_takes_the_shortest_lifetime_that_lasts_long_enough() -> None:
    from podium.types import nearest_lifetime

    anthropic, openai = ("5m", "1h"), ("30m", "12h")
    assert nearest_lifetime("5m", anthropic) == "5m"
    assert nearest_lifetime("30m", anthropic) == "1h"
    assert nearest_lifetime("12h", anthropic) == "1h"  # none lasts so long: the longest
    assert nearest_lifetime("5m", openai) == "30m"
    assert nearest_lifetime("1h", openai) == "12h"


SOURCE = Citation("Revenue grew.", 0, "page", 1, 2)


async def test_a_streams_passages_and_citations_fold_into_cited_spans() -> None:
    async def events() -> AsyncIterator[StreamEvent]:
        yield TextDelta("As reported, ")
        yield TextDelta("", passage=True)
        yield CitationDelta(SOURCE)
        yield TextDelta("revenue ")
        yield TextDelta("grew")
        yield TextDelta(".", passage=True)

    response = await collect(events(), id="x", model="m")
    assert response.text == "As reported, revenue grew."
    assert response.citations == [CitedSpan(13, 25, [SOURCE])]
    assert passages(response) == [("As reported, ", []), ("revenue grew", [SOURCE]), (".", [])]


def test_passages_cut_the_text_at_its_cited_spans_and_spans_of_puts_them_back() -> None:
    cited = ChatResponse("x", "m", text="ab", citations=[CitedSpan(0, 2, [SOURCE])])
    plain = ChatResponse("x", "m", text="plain")
    empty = ChatResponse("x", "m")
    assert passages(cited) == [("ab", [SOURCE])]
    assert passages(plain) == [("plain", [])]
    assert passages(empty) == []
    for response in (cited, plain):
        assert spans_of(passages(response)) == response.citations
