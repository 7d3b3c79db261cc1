"""Metrics: the bulk histogram of the hot path exports what a Histogram would."""

from __future__ import annotations

import threading
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from stream_forecaster.monitoring.histograms import LATENCY_BUCKETS, BulkHistogram
from stream_forecaster.monitoring.metrics import ServiceMetrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@settings(max_examples=100, deadline=None)
@given(
    one_by_one=st.lists(st.sampled_from([0.0, *LATENCY_BUCKETS, 0.003, 75.0]), max_size=30),
    batch=st.lists(st.floats(0, 100, allow_nan=False), max_size=30),
)
def test_a_bulk_histogram_exports_what_a_histogram_would(
    one_by_one: list[float], batch: list[float]
) -> None:
    """Same bucket labels, cumulative counts, count and sum, values on a bound included."""
    plain, bulk = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("sf_x_seconds", "x", buckets=LATENCY_BUCKETS, registry=plain)
    histogram = BulkHistogram("sf_x_seconds", "x", buckets=LATENCY_BUCKETS, registry=bulk)
    for value in one_by_one:
        reference.observe(value)
        histogram.observe(value)
    for value in batch:
        reference.observe(value)
    histogram.observe_many(batch)
    expected, got = samples(plain), samples(bulk)
    total = ("sf_x_seconds_sum", ())
    assert got.pop(total) == pytest.approx(expected.pop(total), rel=1e-12, abs=1e-12)
    assert got == expected


def test_values_observed_from_other_threads_are_all_counted() -> None:
    registry = CollectorRegistry()
    histogram = BulkHistogram("sf_y_seconds", "y", buckets=(0.1, 1.0), registry=registry)
    per_thread, threads = 25_000, 4  # more than are held before folding

    def callbacks() -> None:
        for _ in range(per_thread):
            histogram.observe(0.5)

    workers = [threading.Thread(target=callbacks) for _ in range(threads)]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):  # scrapes racing with the callbacks
        registry.get_sample_value("sf_y_seconds_count")
    for worker in workers:
        worker.join()
    assert registry.get_sample_value("sf_y_seconds_count") == per_thread * threads
    assert registry.get_sample_value("sf_y_seconds_bucket", {"le": "0.1"}) == 0
    assert registry.get_sample_value("sf_y_seconds_bucket", {"le": "1.0"}) == per_thread * threads


def test_serve_exports_the_input_wait_and_end_to_end_latency() -> None:
    registry = CollectorRegistry()
    metrics = ServiceMetrics(registry)
    metrics.input_wait_seconds.observe_many([0.004, 0.02, 0.02])
    metrics.end_to_end_seconds.observe(0.03)
    assert registry.get_sample_value("sf_input_wait_seconds_bucket", {"le": "0.005"}) == 1
    assert registry.get_sample_value("sf_input_wait_seconds_bucket", {"le": "0.025"}) == 3
    assert registry.get_sample_value("sf_end_to_end_latency_seconds_count") == 1


def test_two_folds_at_once_count_each_held_value_once() -> None:
    """A scrape folding the held values while a callback folds them too (simulated: the
    other fold runs in the middle of this one's pops)."""
    registry = CollectorRegistry()
    histogram = BulkHistogram("sf_z_seconds", "z", buckets=(1.0,), registry=registry)

    class Interrupted(deque[float]):
        pops = 0

        def popleft(self) -> float:
            Interrupted.pops += 1
            if Interrupted.pops == 3:  # the other fold takes the rest first
                histogram._held = deque()
                other = [super(Interrupted, self).popleft() for _ in range(len(self))]
                histogram.observe_many(other[1:])
                return other[0]
            return super().popleft()

    histogram._held = Interrupted([0.5] * 10)
    assert registry.get_sample_value("sf_z_seconds_count") == 10
