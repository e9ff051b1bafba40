"""The rollup increments of a batch: every dimension in both tiers, the latency histograms keyed
by their bucket's edge, counts as integers and sums as the traces add up."""

from __future__ import annotations

import random

import pytest

from podium.observe.rollup import SEP, latency_edge, rollup_rows, upsert_statements
from tests.test_store_sqlite import trace

HOUR = 1_800_000_000.0  # a whole hour (and five minutes)


def by_key(rows: list[tuple[object, ...]]) -> dict[tuple[object, ...], tuple[object, ...]]:
    keyed = {row[:3]: row[3:] for row in rows}
    assert len(keyed) == len(rows)  # one increment per (dim, bucket, key)
    return keyed


def test_every_dimension_is_totalled_per_five_minutes_and_per_hour() -> None:
    records = [
        trace("a", created_at=HOUR + 10, worker="alpha", caller="k1", cost_usd=0.25),
        trace("b", created_at=HOUR + 20, worker="beta", caller="k1", contract="c1", status="error"),
        trace("c", created_at=HOUR + 400, worker="alpha", caller="k2", input_tokens=3),
        trace("d", created_at=HOUR + 30, worker=None, caller="k2", route="auto", status="error"),
    ]
    rows = by_key(rollup_rows(records))
    assert rows[("all", HOUR, "")][:2] == (3, 2)
    assert rows[("all", HOUR + 300, "")][:2] == (1, 0)
    assert rows[("all@1h", HOUR, "")] == pytest.approx((4, 2, 0.2503, 39, 136, 50.0))
    assert rows[("worker@1h", HOUR, "alpha")][:2] == (2, 0)
    assert rows[("worker", HOUR, "(none)")][:2] == (1, 1)
    assert rows[("caller@1h", HOUR, "k2")][3] == 15  # input tokens: 3 + 12
    assert rows[("contract", HOUR, "c1")][:2] == (1, 1)
    assert rows[("contract@1h", HOUR, "(none)")][0] == 3
    assert rows[("route_worker@1h", HOUR, f"auto{SEP}(none)")][0] == 1
    assert rows[("route_worker@1h", HOUR, f"direct{SEP}alpha")][0] == 2
    for values in rows.values():
        assert all(type(count) is int for count in (values[0], values[1], values[3], values[4]))


def test_latency_histograms_are_keyed_by_the_bucket_edge() -> None:
    records = [
        trace("fast", created_at=HOUR, latency_ms=0.5, ttft_ms=None),
        trace("usual", created_at=HOUR, latency_ms=12.5, ttft_ms=3.25),
        trace("same bucket", created_at=HOUR + 60, latency_ms=12.0, ttft_ms=3.3),
        trace("days", created_at=HOUR, latency_ms=3e11, ttft_ms=2e10),
        trace("failed", created_at=HOUR, status="error", latency_ms=12.5),  # not in histograms
    ]
    rows = by_key(rollup_rows(records))
    latency = {key: values[0] for (dim, _, key), values in rows.items() if dim == "latency_ms"}
    assert latency == {
        f"alpha{SEP}0.0": 1,
        f"alpha{SEP}{latency_edge(12.5)!r}": 2,
        f"alpha{SEP}{latency_edge(3e11)!r}": 1,
    }
    ttft = {key: values[0] for (dim, _, key), values in rows.items() if dim == "ttft_ms@1d"}
    assert ttft == {
        f"alpha{SEP}{latency_edge(3.25)!r}": 2,
        f"alpha{SEP}{latency_edge(2e10)!r}": 1,
    }
    assert rows[("latency_ms", HOUR, f"alpha{SEP}{latency_edge(12.5)!r}")] == pytest.approx(
        (2, 0, 0.0002, 24, 68, 0.0)
    )


def test_upserts_carry_every_row_in_a_few_statements() -> None:
    rows = rollup_rows([trace(f"t{n}", created_at=HOUR + n, latency_ms=1.0 + n) for n in range(40)])
    statements = upsert_statements(rows)
    sizes = [len(params) // 9 for _, params in statements]
    assert sum(sizes) == len(rows) == 56
    # Any count up to 32 in one statement, powers of two above: a few texts, each prepared once.
    assert sizes == [32, 24]
    assert [value for _, params in statements for value in params] == [
        value for row in rows for value in row
    ]


def test_every_bucket_starts_where_the_time_divided_by_its_width_says() -> None:
    """The hour and day buckets are derived from the five-minute one; they must be the floats
    that flooring the trace's own time gives (rows written before are keyed by those)."""
    rng = random.Random(5)
    times = [rng.uniform(0, 4e9) for _ in range(2000)]
    times += [float(int(t) // 300 * 300) + d for t in times[:500] for d in (0.0, -1e-6, 299.99)]
    for created in times:
        rows = rollup_rows([trace("t", created_at=created, latency_ms=5.0, ttft_ms=2.0)])
        buckets = {dim: bucket for dim, bucket, _ in (row[:3] for row in rows)}
        for dim, width in (("all", 300), ("all@1h", 3600), ("latency_ms", 3600)):
            assert buckets[dim] == float(int(created // width) * width)
        assert buckets["latency_ms@1d"] == float(int(created // 86400) * 86400)
