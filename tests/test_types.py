from podium.types import ChatRequest, ImagePart, Message, TextPart


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
