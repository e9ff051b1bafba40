"""Quality-cost curves and the numbers read off them.

Definitions (also in docs/routing.md):

- A router's operating points are (mean cost per query, mean quality) on the test set, one per
  value of its knob (lambda, target, ...).
- Its frontier is the upper convex hull of those points, made non-decreasing: mixing two
  operating points at random reaches any point on the segment between them (RouterBench's
  argument), and spending more never has to lower quality.
- AIQ (average improvement in quality) is the area under the frontier over the cost range
  [cheapest single model, dearest single model], divided by that range's width. The frontier is
  flat to the right of its dearest point and 0 to the left of its cheapest one (no quality is
  reachable for less than the router's cheapest point).
- quality at a cost fraction f: the frontier's value at f x the best single model's cost.
- cost to match best: the least cost at which the frontier reaches the best single model's
  quality, or None when it never does.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Point:
    quality: float
    cost: float
    param: float | str | None = None


def frontier(points: Sequence[Point]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of ``points`` as (cost, quality), by cost."""
    pts = sorted({(p.cost, p.quality) for p in points})
    if not pts:
        return []
    # Keep only points that improve quality as cost grows (a dearer, worse point is useless).
    useful: list[tuple[float, float]] = []
    for cost, quality in pts:
        if useful and quality <= useful[-1][1]:
            continue
        while useful and useful[-1][0] == cost:
            useful.pop()
        useful.append((cost, quality))
    hull: list[tuple[float, float]] = []
    for point in useful:
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or under the chord from hull[-2] to point
            if (q2 - q1) * (point[0] - c1) <= (point[1] - q1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append(point)
    return hull


def value_at(hull: Sequence[tuple[float, float]], cost: float) -> float:
    """The frontier's quality at ``cost`` (0 below its cheapest point)."""
    if not hull or cost < hull[0][0]:
        return 0.0
    if cost >= hull[-1][0]:
        return hull[-1][1]
    costs = [c for c, _ in hull]
    qualities = [q for _, q in hull]
    return float(np.interp(cost, costs, qualities))


def cost_to_reach(hull: Sequence[tuple[float, float]], quality: float) -> float | None:
    for index, (cost, q) in enumerate(hull):
        if q >= quality - 1e-12:
            if index == 0:
                return cost
            c0, q0 = hull[index - 1]
            return c0 + (quality - q0) * (cost - c0) / (q - q0)
    return None


def aiq(hull: Sequence[tuple[float, float]], low: float, high: float) -> float:
    """Area under the frontier over [low, high], divided by (high - low)."""
    if high <= low:
        return value_at(hull, high)
    if not hull:
        return 0.0
    start = hull[0][0]
    grid = sorted({low, high, *(c for c, _ in hull if low < c < high)})
    area = 0.0
    for a, b in itertools.pairwise(grid):
        if a < start:
            continue  # nothing is reachable for less than the cheapest point
        area += 0.5 * (value_at(hull, a) + value_at(hull, b)) * (b - a)
    return area / (high - low)
