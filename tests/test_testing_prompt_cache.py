"""The fake Anthropic server's prompt cache: what a client of the real API sees in ``usage``."""

from __future__ import annotations

from typing import Any

import pytest

from podium.testing.prompt_cache import (
    CacheRefusal,
    CacheUse,
    PromptCache,
    anthropic_blocks,
    openai_chat_blocks,
    responses_blocks,
)

EPHEMERAL = {"type": "ephemeral"}
HOUR = {"type": "ephemeral", "ttl": "1h"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def text(words: int, mark: dict[str, str] | None = None, word: str = "w") -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": " ".join([word] * words)}
    if mark is not None:
        block["cache_control"] = mark
    return block


def body(system: list[dict[str, Any]], *turns: str, **extra: Any) -> dict[str, Any]:
    messages = [
        {"role": "user" if index % 2 == 0 else "assistant", "content": turn}
        for index, turn in enumerate(turns or ("hello",))
    ]
    return {"model": "claude-test", "system": system, "messages": messages, **extra}


@pytest.fixture
def clock() -> Clock:
    return Clock()


class Anthropic:
    """The cache as the fake Anthropic server uses it."""

    def __init__(self, clock: Clock) -> None:
        self.cache = PromptCache(minimum_tokens=100, clock=clock)

    def use(self, body: dict[str, Any]) -> CacheUse:
        return self.cache.use(anthropic_blocks(body))


@pytest.fixture
def cache(clock: Clock) -> Anthropic:
    return Anthropic(clock)


def test_first_request_writes_the_prefix_and_the_next_reads_it(cache: Anthropic) -> None:
    request = body([text(150, EPHEMERAL)])
    first = cache.use(request)
    assert (first.read, first.written, first.written_long) == (0, 150, 0)
    second = cache.use(body([text(150, EPHEMERAL)], "another question"))
    assert (second.read, second.total_written) == (150, 0)


def test_a_prefix_under_the_minimum_is_not_cached_and_is_no_error(cache: Anthropic) -> None:
    assert cache.use(body([text(50, EPHEMERAL)])).total_written == 0
    assert cache.use(body([text(50, EPHEMERAL)])).read == 0


def test_no_breakpoint_no_cache(cache: Anthropic) -> None:
    assert cache.use(body([text(500)])).total_written == 0


def test_a_changed_prefix_misses(cache: Anthropic) -> None:
    cache.use(body([text(150, EPHEMERAL)]))
    changed = cache.use(body([text(150, EPHEMERAL, word="x")]))
    assert (changed.read, changed.total_written) == (0, 150)


def test_entries_belong_to_one_model(cache: Anthropic) -> None:
    cache.use(body([text(150, EPHEMERAL)]))
    other = cache.use({**body([text(150, EPHEMERAL)]), "model": "claude-other"})
    assert (other.read, other.total_written) == (0, 150)


def test_entries_expire_after_their_lifetime_from_last_use(cache: Anthropic, clock: Clock) -> None:
    cache.use(body([text(150, EPHEMERAL)]))
    clock.now += 240
    assert cache.use(body([text(150, EPHEMERAL)])).read == 150  # refreshed for 5 more minutes
    clock.now += 240
    assert cache.use(body([text(150, EPHEMERAL)])).read == 150
    clock.now += 301
    assert cache.use(body([text(150, EPHEMERAL)])).read == 0


def test_an_hour_entry_outlives_five_minutes(cache: Anthropic, clock: Clock) -> None:
    first = cache.use(body([text(150, HOUR)]))
    assert (first.written, first.written_long) == (0, 150)
    clock.now += 3000
    assert cache.use(body([text(150, HOUR)])).read == 150


def test_writes_are_split_by_each_breakpoints_lifetime(cache: Anthropic) -> None:
    use = cache.use(body([text(120, HOUR), text(80, EPHEMERAL)]))
    assert (use.written_long, use.written) == (120, 80)


def test_a_conversation_moving_its_breakpoint_reads_the_last_turns_entry(
    cache: Anthropic,
) -> None:
    system = [text(150)]
    first = cache.use(body(system, "question one", cache_control=EPHEMERAL))
    assert first.total_written == 152  # the system prompt and the first question
    second = cache.use(
        body(system, "question one", "answer one", "question two", cache_control=EPHEMERAL)
    )
    assert second.read == 152
    assert second.total_written == 4  # the new turns, written for the next one


def test_top_level_cache_control_marks_the_last_block(cache: Anthropic) -> None:
    use = cache.use(body([text(150)], cache_control=EPHEMERAL))
    assert use.total_written == 151


def test_tools_come_first_in_the_prefix(cache: Anthropic) -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    cache.use({**body([text(150, EPHEMERAL)]), "tools": [tool]})
    changed = cache.use({**body([text(150, EPHEMERAL)]), "tools": [{**tool, "name": "g"}]})
    assert changed.read == 0


def test_more_than_four_breakpoints_are_refused(cache: Anthropic) -> None:
    with pytest.raises(CacheRefusal, match="A maximum of 4 blocks with cache_control"):
        cache.use(body([text(10, EPHEMERAL) for _ in range(5)]))


def test_an_hour_breakpoint_after_a_five_minute_one_is_refused(cache: Anthropic) -> None:
    with pytest.raises(CacheRefusal, match="ttl '1h' cannot come after"):
        cache.use(body([text(10, EPHEMERAL), text(10, HOUR)]))


def test_an_unknown_lifetime_is_refused(cache: Anthropic) -> None:
    with pytest.raises(CacheRefusal, match="ttl"):
        cache.use(body([text(10, {"type": "ephemeral", "ttl": "2h"})]))


# -- OpenAI -----------------------------------------------------------------------------------


def mark(ttl: str | None = None) -> dict[str, str]:
    return {"mode": "explicit", **({"ttl": ttl} if ttl else {})}


def chat(*parts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": list(parts)}], **extra}


def part(words: int, breakpoint: dict[str, str] | None = None, word: str = "w") -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": " ".join([word] * words)}
    if breakpoint is not None:
        block["prompt_cache_breakpoint"] = breakpoint
    return block


@pytest.fixture
def openai_cache(clock: Clock) -> PromptCache:
    return PromptCache(minimum_tokens=100, clock=clock)


def test_openai_caches_the_whole_prompt_by_default(openai_cache: PromptCache) -> None:
    first = openai_cache.use(openai_chat_blocks(chat(part(150))))
    assert (first.read, first.written) == (0, 150)
    longer = openai_cache.use(openai_chat_blocks(chat(part(150), part(20, word="x"))))
    assert (longer.read, longer.written) == (150, 20)  # no lookback limit: any cached prefix


def test_explicit_mode_caches_only_at_breakpoints(openai_cache: PromptCache) -> None:
    explicit = {"prompt_cache_options": {"mode": "explicit"}}
    assert openai_cache.use(openai_chat_blocks(chat(part(150), **explicit))).total_written == 0
    use = openai_cache.use(openai_chat_blocks(chat(part(120, mark()), part(30), **explicit)))
    assert (use.written, use.read) == (120, 0)


def test_twelve_hour_breakpoints_are_long_writes_and_outlive_thirty_minutes(
    openai_cache: PromptCache, clock: Clock
) -> None:
    body = chat(part(150, mark("12h")), part(5), prompt_cache_options={"mode": "explicit"})
    first = openai_cache.use(openai_chat_blocks(body))
    assert (first.written_long, first.written) == (150, 0)
    clock.now += 6 * 3600
    assert openai_cache.use(openai_chat_blocks(body)).read == 150


def test_one_request_writes_at_most_four_breakpoints(openai_cache: PromptCache) -> None:
    parts = [part(40, mark()) for _ in range(6)]
    use = openai_cache.use(openai_chat_blocks(chat(*parts)))
    # the implicit breakpoint and the latest three explicit ones: the first two are not written
    assert openai_cache.use(openai_chat_blocks(chat(*parts[:2]))).read == 0
    assert use.written == 240


def test_responses_read_instructions_and_parts(openai_cache: PromptCache) -> None:
    body = {
        "model": "gpt-test",
        "instructions": " ".join(["rule"] * 150),
        "input": [{"role": "user", "content": [part(5) | {"type": "input_text"}]}],
    }
    openai_cache.use(responses_blocks(body))
    assert openai_cache.use(responses_blocks(body)).read == 155


def test_a_malformed_breakpoint_is_refused(openai_cache: PromptCache) -> None:
    with pytest.raises(CacheRefusal, match="prompt_cache_breakpoint"):
        openai_cache.use(openai_chat_blocks(chat(part(10, {"mode": "implicit"}))))
