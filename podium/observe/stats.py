"""The dashboard's questions, answered by aggregation in SQL over a bounded time range.

Aggregates read ``trace_rollup`` (five-minute and hourly totals per worker, caller, contract
and route, hourly and daily latency histograms: see rollup.py), so their cost depends on the
range's length, not on how much traffic it held; only the trace list reads the traces. Ranges
longer than the configured maximum are clamped (and the answer says so); time series have at
most ``max_buckets`` points; lists return at most ``max_rows`` rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from podium.config import Price
from podium.errors import PodiumError
from podium.observe.rollup import BUCKET, LATENCY_BUCKET, SEP, latency_width

Dimension = Literal["worker", "contract", "caller"]
DIMENSIONS: tuple[Dimension, ...] = ("worker", "contract", "caller")
# Five minutes at least: every chart then reads the rollup, whatever the traffic.
NICE_BUCKETS = (300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
TOP_SERIES = 8  # series drawn per chart; the rest are summed into "other"
DAY = 86400.0


class Rows(Protocol):
    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Sequence[Any]: ...


@dataclass(frozen=True, slots=True)
class Window:
    since: float
    until: float
    bucket: int  # seconds per time-series point
    clamped: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            "bucket_seconds": self.bucket,
            "clamped": self.clamped,
        }


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY, "w": 7 * DAY}


def parse_time(text: str, *, now: float | None = None, param: str = "since") -> float:
    """Epoch seconds from ``1732780800``, ``2026-11-28``, ``2026-11-28T12:00:00Z`` or an age
    such as ``30m``, ``24h``, ``7d`` (that long before now)."""
    value = text.strip()
    now = time.time() if now is None else now
    try:
        return float(value)
    except ValueError:
        pass
    if len(value) > 1 and value[-1] in _UNITS:
        try:
            return now - float(value[:-1]) * _UNITS[value[-1]]
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise PodiumError(
            "invalid_request",
            f"{param} {text!r} is not a time: use epoch seconds, an ISO date such as "
            "2026-11-28T12:00:00Z, or an age such as 30m, 24h, 7d",
            param=param,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def window(
    since: float | None,
    until: float | None,
    *,
    max_range_days: float,
    max_buckets: int,
    now: float | None = None,
) -> Window:
    """The range to query: defaults to the last 24 hours; a range longer than
    ``max_range_days`` keeps its end and is shortened (``clamped``)."""
    end = until if until is not None else (now if now is not None else time.time())
    start = since if since is not None else end - DAY
    if start >= end:
        raise PodiumError("invalid_request", "'since' must be before 'until'", param="since")
    clamped = False
    if end - start > max_range_days * DAY:
        start, clamped = end - max_range_days * DAY, True
    span = end - start
    bucket = next((b for b in NICE_BUCKETS if span / b <= max_buckets), None)
    if bucket is None:
        bucket = (int(span / max_buckets) // BUCKET + 1) * BUCKET
    # Points start on a whole bucket, so long ranges line up with the rollup rows.
    start = float(int(start // bucket) * bucket)
    return Window(start, end, bucket, clamped)


def _tier(w: Window) -> str:
    """Which rollup rows to read: hourly ones when the points are whole hours."""
    return "@1h" if w.bucket % 3600 == 0 else ""


def _rolled(w: Window) -> bool:
    """Windows of whole five-minute buckets (all that :func:`window` makes) read the rollup;
    others (finer custom windows) the traces themselves."""
    return w.bucket >= BUCKET and w.bucket % BUCKET == 0


def _where(w: Window) -> tuple[str, list[Any]]:
    return "created_at >= ? AND created_at < ?", [w.since, w.until]


async def overview(db: Rows, w: Window) -> dict[str, Any]:
    if _rolled(w):
        rows = await db.execute(
            "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(cost_usd), 0), "
            "COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            "COALESCE(SUM(errors), 0), SUM(latency_ms) / NULLIF(SUM(requests), 0) "
            "FROM trace_rollup WHERE dim = ? AND bucket >= ? AND bucket < ?",
            ("all" + _tier(w), w.since, w.until),
        )
    else:
        where, params = _where(w)
        rows = await db.execute(
            "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(input_tokens), 0), "
            "COALESCE(SUM(output_tokens), 0), "
            "COALESCE(SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END), 0), AVG(latency_ms) "
            f"FROM traces WHERE {where}",
            tuple(params),
        )
    count, cost, tokens_in, tokens_out, errors, latency = rows[0]
    quality = await db.execute(
        "SELECT COUNT(*), AVG(score) FROM feedback "
        "WHERE created_at >= ? AND created_at < ? AND score IS NOT NULL",
        (w.since, w.until),
    )
    return {
        "requests": count,
        "cost_usd": cost,
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "errors": errors,
        "avg_latency_ms": latency,
        "signals": quality[0][0],
        "avg_quality": quality[0][1],
    }


def _fold(totals: dict[str, float], keep: int = TOP_SERIES) -> set[str]:
    ranked = sorted(totals, key=lambda key: -totals[key])
    return set(ranked[:keep])


async def spend(db: Rows, w: Window, by: str) -> dict[str, Any]:
    """Cost and requests per time bucket, one series per value of ``by`` (top 8 + other)."""
    if by not in DIMENSIONS:
        raise PodiumError(
            "invalid_request",
            f"'by' must be one of {', '.join(DIMENSIONS)}; got {by!r}",
            param="by",
        )
    if _rolled(w):
        rows = await db.execute(
            "SELECT CAST((bucket - ?) / ? AS INTEGER) AS b, key, SUM(requests), SUM(cost_usd) "
            "FROM trace_rollup WHERE dim = ? AND bucket >= ? AND bucket < ? GROUP BY b, key",
            (w.since, w.bucket, by + _tier(w), w.since, w.until),
        )
    else:
        where, params = _where(w)
        rows = await db.execute(
            f"SELECT CAST((created_at - ?) / ? AS INTEGER) AS b, COALESCE({by}, '(none)') AS k, "
            f"COUNT(*), SUM(cost_usd) FROM traces WHERE {where} GROUP BY b, k",
            (w.since, w.bucket, *params),
        )
    totals: dict[str, float] = {}
    for _, key, _, cost in rows:
        totals[key] = totals.get(key, 0.0) + cost
    kept = _fold(totals)
    points: dict[tuple[int, str], list[float]] = {}
    for bucket, key, count, cost in rows:
        name = key if key in kept else "other"
        point = points.setdefault((bucket, name), [0, 0.0])
        point[0] += count
        point[1] += cost
    series: dict[str, list[dict[str, float]]] = {}
    for (bucket, name), (count, cost) in sorted(points.items()):
        series.setdefault(name, []).append(
            {"t": w.since + bucket * w.bucket, "requests": count, "cost_usd": cost}
        )
    order = sorted(series, key=lambda name: -sum(p["cost_usd"] for p in series[name]))
    return {"by": by, "series": [{"key": name, "points": series[name]} for name in order]}


async def routing(db: Rows, w: Window, max_rows: int) -> list[dict[str, Any]]:
    if _rolled(w):
        grouped = await db.execute(
            "SELECT key, SUM(requests), SUM(cost_usd), SUM(errors) FROM trace_rollup "
            "WHERE dim = ? AND bucket >= ? AND bucket < ? "
            "GROUP BY key ORDER BY 2 DESC LIMIT ?",
            ("route_worker" + _tier(w), w.since, w.until, max_rows),
        )
        rows = [(*key.split(SEP, 1), n, c, e) for key, n, c, e in grouped]
    else:
        where, params = _where(w)
        rows = list(
            await db.execute(
                "SELECT route, COALESCE(worker, '(none)') AS wk, COUNT(*), SUM(cost_usd), "
                "SUM(CASE WHEN status = 'error' THEN 1 ELSE 0 END) "
                f"FROM traces WHERE {where} GROUP BY route, wk ORDER BY 3 DESC LIMIT ?",
                (*params, max_rows),
            )
        )
    return [
        {"route": r, "worker": wk, "requests": n, "cost_usd": c, "errors": e}
        for r, wk, n, c, e in rows
    ]


async def quality(db: Rows, w: Window, max_rows: int) -> list[dict[str, Any]]:
    """Average quality score by worker and route, from signals given in the range."""
    # Signals written by other means than Podium's own may lack the copied worker and route:
    # only for those does the trace get looked up (COALESCE stops at the first non-null).
    rows = await db.execute(
        "SELECT COALESCE(f.worker, (SELECT t.worker FROM traces t "
        "WHERE t.trace_id = f.trace_id), '(none)') AS wk, "
        "COALESCE(f.route, (SELECT t.route FROM traces t WHERE t.trace_id = f.trace_id), "
        "'none') AS rt, f.source, COUNT(*), AVG(f.score) FROM feedback f "
        "WHERE f.created_at >= ? AND f.created_at < ? AND f.score IS NOT NULL "
        "GROUP BY wk, rt, f.source ORDER BY 4 DESC LIMIT ?",
        (w.since, w.until, max_rows),
    )
    return [
        {"worker": wk, "route": r, "source": s, "signals": n, "avg_score": a}
        for wk, r, s, n, a in rows
    ]


# Latency histogram edges: 1 ms steps below 100 ms, 10 ms below 1 s, 100 ms below 10 s, then 1 s.
# Percentiles are read from these buckets in Python (SQLite has no percentile function), so they
# are exact to within one bucket's width.
_EDGE = (
    "CASE WHEN {c} < 100 THEN CAST({c} AS INTEGER) "
    "WHEN {c} < 1000 THEN CAST({c} / 10 AS INTEGER) * 10 "
    "WHEN {c} < 10000 THEN CAST({c} / 100 AS INTEGER) * 100 "
    "ELSE CAST({c} / 1000 AS INTEGER) * 1000 END"
)


def _width(edge: float) -> float:
    return 1.0 if edge < 100 else 10.0 if edge < 1000 else 100.0 if edge < 10000 else 1000.0


def _widths(rolled: bool) -> Callable[[float], float]:
    return latency_width if rolled else _width


def percentiles(
    histogram: list[tuple[float, int]],
    qs: Sequence[float],
    width: Callable[[float], float] = _width,
) -> list[float | None]:
    """Percentiles from (bucket edge, count) pairs: the midpoint of the bucket holding each."""
    ordered = sorted(histogram)
    total = sum(count for _, count in ordered)
    if total == 0:
        return [None for _ in qs]
    out: list[float | None] = []
    for q in qs:
        target, seen = q * total, 0
        value = ordered[-1][0] + width(ordered[-1][0]) / 2
        for edge, count in ordered:
            seen += count
            if seen >= target:
                value = edge + width(edge) / 2
                break
        out.append(value)
    return out


async def latency(db: Rows, w: Window) -> list[dict[str, Any]]:
    where, params = _where(w)
    result: list[dict[str, Any]] = []
    hist: dict[str, dict[str, list[tuple[float, int]]]] = {}
    for column in ("latency_ms", "ttft_ms"):
        if _rolled(w):
            # Ranges of days read daily histograms (from the start of the first day).
            tier, size = ("@1d", 86400) if w.until - w.since >= 3 * DAY else ("", LATENCY_BUCKET)
            start = float(int(w.since // size) * size)
            grouped = await db.execute(
                "SELECT key, SUM(requests) FROM trace_rollup "
                "WHERE dim = ? AND bucket >= ? AND bucket < ? GROUP BY key",
                (column + tier, start, w.until),
            )
            rows = []
            for key, count in grouped:
                worker, edge = key.split(SEP, 1)
                rows.append((worker, float(edge), count))
        else:
            rows = list(
                await db.execute(
                    f"SELECT COALESCE(worker, '(none)') AS wk, {_EDGE.format(c=column)} AS e, "
                    f"COUNT(*) FROM traces WHERE {where} AND status = 'ok' "
                    f"AND {column} IS NOT NULL GROUP BY wk, e",
                    tuple(params),
                )
            )
        for worker, edge, count in rows:
            hist.setdefault(worker, {}).setdefault(column, []).append((edge, count))
    for worker in sorted(hist):
        lat = hist[worker].get("latency_ms", [])
        width = _widths(_rolled(w))
        p50, p90, p99 = percentiles(lat, (0.5, 0.9, 0.99), width)
        (ttft50,) = percentiles(hist[worker].get("ttft_ms", []), (0.5,), width)
        result.append(
            {
                "worker": worker,
                "requests": sum(count for _, count in lat),
                "p50_ms": p50,
                "p90_ms": p90,
                "p99_ms": p99,
                "ttft_p50_ms": ttft50,
            }
        )
    return result


async def savings(db: Rows, w: Window, baseline: str, prices: dict[str, Price]) -> dict[str, Any]:
    """What the same traffic (the same tokens) would have cost on the ``baseline`` worker."""
    price = prices.get(baseline)
    if price is None:
        raise PodiumError(
            "invalid_request",
            f"baseline {baseline!r} is not a configured worker; choose one of: "
            f"{', '.join(sorted(prices)) or '(none)'}",
            param="baseline",
        )
    if _rolled(w):
        rows = await db.execute(
            "SELECT CAST((bucket - ?) / ? AS INTEGER) AS b, SUM(cost_usd), SUM(input_tokens), "
            "SUM(output_tokens) FROM trace_rollup WHERE dim = ? AND bucket >= ? "
            "AND bucket < ? GROUP BY b ORDER BY b",
            (w.since, w.bucket, "all" + _tier(w), w.since, w.until),
        )
    else:
        where, params = _where(w)
        rows = await db.execute(
            "SELECT CAST((created_at - ?) / ? AS INTEGER) AS b, SUM(cost_usd), "
            f"SUM(input_tokens), SUM(output_tokens) FROM traces WHERE {where} "
            "GROUP BY b ORDER BY b",
            (w.since, w.bucket, *params),
        )
    points = []
    actual_total = baseline_total = 0.0
    for bucket, cost, tokens_in, tokens_out in rows:
        would = (tokens_in * price.input + tokens_out * price.output) / 1_000_000
        actual_total += cost
        baseline_total += would
        points.append({"t": w.since + bucket * w.bucket, "actual_usd": cost, "baseline_usd": would})
    return {
        "baseline": baseline,
        "actual_usd": actual_total,
        "baseline_usd": baseline_total,
        "saved_usd": baseline_total - actual_total,
        "saved_ratio": (baseline_total - actual_total) / baseline_total if baseline_total else None,
        "points": points,
    }


LIST_COLUMNS = (
    "trace_id",
    "created_at",
    "caller",
    "contract",
    "route",
    "worker",
    "status",
    "http_status",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
)


async def traces(
    db: Rows,
    w: Window,
    *,
    limit: int,
    before: float | None = None,
    filters: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The newest traces in the range (``before`` pages further back), optionally filtered by
    caller, worker, contract, route or status."""
    where, params = _where(w)
    clauses = [where]
    if before is not None:
        clauses.append("created_at < ?")
        params.append(before)
    for column, value in (filters or {}).items():
        if column not in ("caller", "worker", "contract", "route", "status"):
            raise PodiumError("invalid_request", f"cannot filter on {column!r}", param=column)
        clauses.append(f"{column} = ?")
        params.append(value)
    rows = await db.execute(
        f"SELECT {', '.join(LIST_COLUMNS)} FROM traces WHERE {' AND '.join(clauses)} "
        "ORDER BY created_at DESC LIMIT ?",
        (*params, limit),
    )
    return [dict(zip(LIST_COLUMNS, row, strict=True)) for row in rows]
