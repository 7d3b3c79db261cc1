"""Reading running forecasters' ``/metrics``: the samples the console view needs, what they
gained over an interval, several instances summed, and the summary of an interval."""

from __future__ import annotations

import http.client
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.monitoring.quantiles import Buckets, histogram_quantile

#: The histograms the view shows.
LATENCY, INFERENCE = "sf_end_to_end_latency_seconds", "sf_inference_seconds"


COUNTERS = ("sf_forecasts_total", "sf_records_total", "sf_records_invalid_total")


GAUGES = ("sf_active_keys", "sf_consumer_lag_records", "sf_model_loaded")


@dataclass(frozen=True)
class Snapshot:
    """Metrics of one instance (or several, summed), each summed over its label sets."""

    values: dict[str, float] = field(default_factory=dict)  # COUNTERS and GAUGES
    buckets: dict[str, Buckets] = field(default_factory=dict)  # LATENCY, INFERENCE
    versions: frozenset[str] = frozenset()  # of sf_model_info series whose value is 1


@dataclass(frozen=True)
class Quantiles:
    """p50 and p99 of a histogram, in seconds; ``cumulative``: since the process started,
    as nothing was observed during the interval."""

    p50: float | None
    p99: float | None
    cumulative: bool = False


@dataclass(frozen=True)
class Summary:
    """What one refresh shows, all instances together."""

    forecasts_per_s: float
    records_per_s: float
    invalid_per_s: float
    latency: Quantiles
    inference: Quantiles
    keys: int
    lag: int
    versions: tuple[str, ...]
    loaded: int  # instances with a model loaded
    up: int  # instances scraped
    down: tuple[str, ...]  # URLs that could not be scraped


def parse_metrics(text: str) -> Snapshot:
    """The samples ``watch`` needs from one Prometheus exposition text."""
    values: dict[str, float] = {}
    buckets: dict[str, Buckets] = {}
    versions = set()
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
    """One instance's metrics, or ``None`` when they cannot be fetched or parsed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_metrics(response.read().decode("utf-8"))
    except (OSError, ValueError, http.client.HTTPException):
        return None


def increase(old: Snapshot | None, new: Snapshot) -> Snapshot:
    """What one instance's counters and buckets gained from ``old`` to ``new``.

    A value lower than before means the process restarted: all of it is new. Without
    ``old`` (the instance was down or not yet seen) nothing is counted.
    """
    if old is None:
        return Snapshot()
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
    versions: frozenset[str] = frozenset()
    for s in snapshots:
        for name, value in s.values.items():
            values[name] = values.get(name, 0.0) + value
        for name, hist in s.buckets.items():
            total = buckets.setdefault(name, {})
            for le, n in hist.items():
                total[le] = total.get(le, 0.0) + n
        versions |= s.versions
    return Snapshot(values, buckets, versions)


def summarize(
    gained: Snapshot, total: Snapshot, seconds: float, up: int, down: Sequence[str]
) -> Summary:
    """The summary of one interval.

    Args:
        gained: what the counters and buckets of the instances up gained in the interval.
        total: the current metrics of the instances up.
        seconds: the length of the interval.
        up: how many instances were scraped.
        down: the URLs that could not be scraped.
    """

    def quantiles(name: str) -> Quantiles:
        cumulative = histogram_quantile(0.5, gained.buckets.get(name, {})) is None
        hist = (total if cumulative else gained).buckets.get(name, {})
        p50, p99 = histogram_quantile(0.5, hist), histogram_quantile(0.99, hist)
        return Quantiles(p50, p99, cumulative and p50 is not None)

    forecasts, records, invalid = (gained.values.get(n, 0.0) / max(seconds, 1e-9) for n in COUNTERS)
    keys, lag, loaded = (round(total.values.get(n, 0.0)) for n in GAUGES)
    return Summary(
        forecasts_per_s=forecasts,
        records_per_s=records,
        invalid_per_s=invalid,
        latency=quantiles(LATENCY),
        inference=quantiles(INFERENCE),
        keys=keys,
        lag=lag,
        versions=tuple(sorted(total.versions)),
        loaded=loaded,
        up=up,
        down=tuple(down),
    )
