"""The feedback API's memory of traces not yet stored: bounded, and exact about what it holds."""

from __future__ import annotations

import pytest

from podium.context import new_trace_id
from podium.observe.recent import MAX_SHARED_PAIRS, RecentTraces


def test_remembers_the_newest_traces_with_their_worker_and_route() -> None:
    recent = RecentTraces(keep=3)
    ids = [new_trace_id() for _ in range(5)]
    for number, trace_id in enumerate(ids):
        recent.add(trace_id, f"w{number}", "direct")
    for number, trace_id in enumerate(ids[-3:], start=2):
        assert recent.get(trace_id) == (f"w{number}", "direct")


def test_never_holds_more_than_twice_keep_and_forgets_the_oldest() -> None:
    recent = RecentTraces(keep=100)
    ids = [new_trace_id() for _ in range(1000)]
    for trace_id in ids:
        recent.add(trace_id, "mock", "direct")
        assert len(recent) <= 200
    assert recent.get(ids[0]) is None
    assert all(recent.get(trace_id) is not None for trace_id in ids[-100:])


def test_unknown_ids_are_unknown() -> None:
    recent = RecentTraces(keep=10)
    known = new_trace_id()
    recent.add(known, "mock", "direct")
    assert recent.get(new_trace_id()) is None
    assert recent.get("f" * 32) is None
    # Spellings int() would read as the same number are other ids, not this one.
    assert recent.get(known.upper()) is None
    assert recent.get("0x" + known[2:]) is None


def test_ids_from_elsewhere_are_kept_as_given() -> None:
    recent = RecentTraces(keep=10)
    recent.add("my-own-trace", None, "none")
    assert recent.get("my-own-trace") == (None, "none")
    assert recent.get("my-own-trac") is None


def test_worker_and_route_pairs_are_shared_and_their_table_bounded() -> None:
    recent = RecentTraces(keep=10 * MAX_SHARED_PAIRS)
    first, second = new_trace_id(), new_trace_id()
    recent.add(first, "mock", "direct")
    recent.add(second, "mock", "direct")
    assert recent.get(first) is recent.get(second)
    for number in range(2 * MAX_SHARED_PAIRS):
        recent.add(new_trace_id(), f"w{number}", "direct")
    assert len(recent._pairs) <= MAX_SHARED_PAIRS
    assert recent.get(first) == ("mock", "direct")


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentTraces(keep=0)
