"""Prometheus' ``histogram_quantile``, for the console view and the benchmarks: the same
answer Grafana shows, from cumulative bucket counts."""

from __future__ import annotations

import math

#: Upper bound (``le``) -> cumulative count.
Buckets = dict[float, float]


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' ``histogram_quantile``; ``None`` where Prometheus answers NaN.

    The bucket holding the q-th observation is found and the answer interpolated linearly
    between its bounds (the first bucket starts at 0, unless its bound is <= 0). In the
    +Inf bucket the answer is the highest finite bound.

    Args:
        q: the quantile, 0 to 1.
        buckets: upper bound -> cumulative count, with +Inf and at least one finite bound.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"expected a quantile between 0 and 1, got {q}")
    ordered = sorted(buckets.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    b = next(i for i, (_, count) in enumerate(ordered) if count >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, below = ordered[b - 1] if b > 0 else (0.0, 0.0)
    end, count = ordered[b][0], ordered[b][1] - below
    return None if count <= 0 else start + (end - start) * (rank - below) / count  # q = 0
