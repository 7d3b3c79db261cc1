"""Reading a running ``serve``'s histograms from /metrics, as PromQL would."""

from __future__ import annotations

from typing import Any


def buckets(serve: Any, name: str = "sf_end_to_end_latency_seconds") -> dict[float, float]:
    """Cumulative bucket counts ``{le: count}`` of histogram ``name`` (a ServeProcess)."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = serve.get("/metrics")
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == name:
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    out[float(sample.labels["le"])] = sample.value
    return out


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Like PromQL's histogram_quantile over the bucket increases between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    rank, lower, previous = q * total, 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - previous) / max(count - previous, 1e-12)
        lower, previous = bound, count
    return bounds[-2]
