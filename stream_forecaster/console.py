"""``stream-forecaster watch``: a live console view of running forecasters.

Every interval it scrapes the ``/metrics`` of one or more ``serve`` processes and shows,
summed over them and computed over that interval: forecasts, records and invalid records
per second, end-to-end latency p50/p99 and inference p99 (from histogram bucket deltas, as
Prometheus' ``histogram_quantile`` does), active keys, consumer lag and the model served;
and the latest forecasts read from the output topic. On a terminal the screen is redrawn
in place; otherwise (logs, pipes) it prints one line per interval.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import signal
import sys
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.messages import Forecast, format_timestamp
from stream_forecaster.settings import Settings

LATENCY = "sf_end_to_end_latency_seconds"
INFERENCE = "sf_inference_seconds"
COUNTERS = ("sf_forecasts_total", "sf_records_total", "sf_records_invalid_total")
GAUGES = ("sf_active_keys", "sf_consumer_lag_records", "sf_model_loaded")
Buckets = dict[float, float]  # upper bound (le) -> cumulative count


@dataclass(frozen=True)
class Snapshot:
    """Metrics of one instance (or several, summed), each summed over its label sets."""

    values: dict[str, float] = field(default_factory=dict)  # counters and gauges
    buckets: dict[str, Buckets] = field(default_factory=dict)  # histogram name -> buckets
    versions: frozenset[str] = frozenset()  # sf_model_info versions whose value is 1


@dataclass(frozen=True)
class Quantiles:
    """Quantiles of one histogram in seconds; ``cumulative``: since the process started,
    because nothing was observed during the interval."""

    p50: float | None
    p99: float | None
    cumulative: bool = False


@dataclass(frozen=True)
class Summary:
    """What one refresh shows, over all instances."""

    forecasts_per_s: float
    records_per_s: float
    invalid_per_s: float
    latency: Quantiles
    inference: Quantiles
    keys: int
    lag: int
    versions: tuple[str, ...]
    loaded: int  # instances with a model loaded
    up: int
    down: tuple[str, ...]  # URLs that could not be scraped


def parse_metrics(text: str) -> Snapshot:
    """The samples ``watch`` needs from one Prometheus exposition text."""
    values: dict[str, float] = {}
    buckets: dict[str, Buckets] = {}
    versions: set[str] = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            base = s.name.removesuffix("_bucket")
            if s.name in COUNTERS or s.name in GAUGES:
                values[s.name] = values.get(s.name, 0.0) + s.value
            elif base in (LATENCY, INFERENCE) and base != s.name:
                hist, le = buckets.setdefault(base, {}), float(s.labels["le"])
                hist[le] = hist.get(le, 0.0) + s.value
            elif s.name == "sf_model_info" and s.value == 1:
                versions.add(s.labels.get("version", "?"))
    return Snapshot(values, buckets, frozenset(versions))


def scrape(url: str, timeout: float = 2.0) -> Snapshot | None:
    """One instance's metrics, or ``None`` when it cannot be reached or read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_metrics(response.read().decode("utf-8"))
    except (OSError, ValueError, http.client.HTTPException):
        return None


def increase(old: Snapshot | None, new: Snapshot) -> Snapshot:
    """What one instance's counters and histogram buckets gained from ``old`` to ``new``.

    A value lower than before means the process restarted: all of it is new. Without an
    ``old`` (the instance was just found) nothing is counted yet.
    """
    if old is None:
        return Snapshot(buckets={name: dict.fromkeys(b, 0.0) for name, b in new.buckets.items()})
    gained = {}
    for name in COUNTERS:
        now, before = new.values.get(name, 0.0), old.values.get(name, 0.0)
        gained[name] = now - before if now >= before else now
    buckets = {}
    for name, hist in new.buckets.items():
        diff = {le: n - old.buckets.get(name, {}).get(le, 0.0) for le, n in hist.items()}
        buckets[name] = dict(hist) if any(d < 0 for d in diff.values()) else diff
    return Snapshot(gained, buckets, new.versions)


def combine(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Several instances as one: values and buckets summed, versions joined."""
    values: dict[str, float] = {}
    buckets: dict[str, Buckets] = {}
    versions: set[str] = set()
    for s in snapshots:
        for name, value in s.values.items():
            values[name] = values.get(name, 0.0) + value
        for name, hist in s.buckets.items():
            total = buckets.setdefault(name, {})
            for le, n in hist.items():
                total[le] = total.get(le, 0.0) + n
        versions |= s.versions
    return Snapshot(values, buckets, frozenset(versions))


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' ``histogram_quantile``; ``None`` where Prometheus gives NaN.

    The q-th observation is located in its bucket and interpolated linearly between the
    bucket's bounds (the first bucket starts at 0, unless its bound is <= 0). In the +Inf
    bucket the answer is the highest finite bound.

    Args:
        q: the quantile, 0 to 1.
        buckets: upper bound -> cumulative count; must include +Inf and one finite bound.
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
    return start if count <= 0 else start + (end - start) * (rank - below) / count


def quantiles(gained: Buckets, total: Buckets) -> Quantiles:
    """p50 and p99 over the interval; the cumulative ones if it observed nothing."""
    cumulative = histogram_quantile(0.5, gained) is None
    chosen = total if cumulative else gained
    p50, p99 = histogram_quantile(0.5, chosen), histogram_quantile(0.99, chosen)
    return Quantiles(p50, p99, cumulative and p50 is not None)


def summarize(gained: Snapshot, total: Snapshot, seconds: float, up: int, down: Sequence[str]) -> Summary:
    """The summary of one interval.

    Args:
        gained: the counters and buckets gained during the interval, all instances.
        total: the current metrics, all instances.
        seconds: length of the interval.
        up: instances scraped.
        down: URLs that could not be scraped.
    """
    rate = {name: gained.values.get(name, 0.0) / max(seconds, 1e-9) for name in COUNTERS}
    return Summary(
        forecasts_per_s=rate["sf_forecasts_total"],
        records_per_s=rate["sf_records_total"],
        invalid_per_s=rate["sf_records_invalid_total"],
        latency=quantiles(gained.buckets.get(LATENCY, {}), total.buckets.get(LATENCY, {})),
        inference=quantiles(gained.buckets.get(INFERENCE, {}), total.buckets.get(INFERENCE, {})),
        keys=round(total.values.get("sf_active_keys", 0.0)),
        lag=round(total.values.get("sf_consumer_lag_records", 0.0)),
        versions=tuple(sorted(total.versions)),
        loaded=round(total.values.get("sf_model_loaded", 0.0)),
        up=up,
        down=tuple(down),
    )
