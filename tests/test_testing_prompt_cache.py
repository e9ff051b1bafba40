"""The fake Anthropic server's prompt cache: what a client of the real API sees in ``usage``."""

from __future__ import annotations

from typing import Any

import pytest

from podium.testing.prompt_cache import CacheRefusal, PromptCache

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


@pytest.fixture
def cache(clock: Clock) -> PromptCache:
    return PromptCache(minimum_tokens=100, clock=clock)


def test_first_request_writes_the_prefix_and_the_next_reads_it(cache: PromptCache) -> None:
    request = body([text(150, EPHEMERAL)])
    first = cache.use(request)
    assert (first.read, first.written_5m, first.written_1h) == (0, 150, 0)
    second = cache.use(body([text(150, EPHEMERAL)], "another question"))
    assert (second.read, second.written) == (150, 0)


def test_a_prefix_under_the_minimum_is_not_cached_and_is_no_error(cache: PromptCache) -> None:
    assert cache.use(body([text(50, EPHEMERAL)])).written == 0
    assert cache.use(body([text(50, EPHEMERAL)])).read == 0


def test_no_breakpoint_no_cache(cache: PromptCache) -> None:
    assert cache.use(body([text(500)])).written == 0


def test_a_changed_prefix_misses(cache: PromptCache) -> None:
    cache.use(body([text(150, EPHEMERAL)]))
    changed = cache.use(body([text(150, EPHEMERAL, word="x")]))
    assert (changed.read, changed.written) == (0, 150)


def test_entries_belong_to_one_model(cache: PromptCache) -> None:
    cache.use(body([text(150, EPHEMERAL)]))
    other = cache.use({**body([text(150, EPHEMERAL)]), "model": "claude-other"})
    assert (other.read, other.written) == (0, 150)


def test_entries_expire_after_their_lifetime_from_last_use(
    cache: PromptCache, clock: Clock
) -> None:
    cache.use(body([text(150, EPHEMERAL)]))
    clock.now += 240
    assert cache.use(body([text(150, EPHEMERAL)])).read == 150  # refreshed for 5 more minutes
    clock.now += 240
    assert cache.use(body([text(150, EPHEMERAL)])).read == 150
    clock.now += 301
    assert cache.use(body([text(150, EPHEMERAL)])).read == 0


def test_an_hour_entry_outlives_five_minutes(cache: PromptCache, clock: Clock) -> None:
    first = cache.use(body([text(150, HOUR)]))
    assert (first.written_5m, first.written_1h) == (0, 150)
    clock.now += 3000
    assert cache.use(body([text(150, HOUR)])).read == 150


def test_writes_are_split_by_each_breakpoints_lifetime(cache: PromptCache) -> None:
    use = cache.use(body([text(120, HOUR), text(80, EPHEMERAL)]))
    assert (use.written_1h, use.written_5m) == (120, 80)


def test_a_conversation_moving_its_breakpoint_reads_the_last_turns_entry(
    cache: PromptCache,
) -> None:
    system = [text(150)]
    first = cache.use(body(system, "question one", cache_control=EPHEMERAL))
    assert first.written == 152  # the system prompt and the first question
    second = cache.use(
        body(system, "question one", "answer one", "question two", cache_control=EPHEMERAL)
    )
    assert second.read == 152
    assert second.written == 4  # the new turns, written for the next one


def test_top_level_cache_control_marks_the_last_block(cache: PromptCache) -> None:
    use = cache.use(body([text(150)], cache_control=EPHEMERAL))
    assert use.written == 151


def test_tools_come_first_in_the_prefix(cache: PromptCache) -> None:
    tool = {"name": "f", "input_schema": {"type": "object"}}
    cache.use({**body([text(150, EPHEMERAL)]), "tools": [tool]})
    changed = cache.use({**body([text(150, EPHEMERAL)]), "tools": [{**tool, "name": "g"}]})
    assert changed.read == 0


def test_more_than_four_breakpoints_are_refused(cache: PromptCache) -> None:
    with pytest.raises(CacheRefusal, match="A maximum of 4 blocks with cache_control"):
        cache.use(body([text(10, EPHEMERAL) for _ in range(5)]))


def test_an_hour_breakpoint_after_a_five_minute_one_is_refused(cache: PromptCache) -> None:
    with pytest.raises(CacheRefusal, match="ttl '1h' cannot come after"):
        cache.use(body([text(10, EPHEMERAL), text(10, HOUR)]))


def test_an_unknown_lifetime_is_refused(cache: PromptCache) -> None:
    with pytest.raises(CacheRefusal, match="ttl"):
        cache.use(body([text(10, {"type": "ephemeral", "ttl": "2h"})]))
