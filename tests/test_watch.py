"""The live console's arithmetic: quantiles from buckets, rates, several instances."""

from __future__ import annotations

import math

import pytest

from stream_forecaster.watch import (
    Snapshot,
    format_line,
    histogram_quantile,
    parse,
    scrape,
    summarize,
)
from tests.kafka_broker import free_port

INF = math.inf


def exposition(forecasts: float, buckets: dict[str, float], version: str = "v1") -> str:
    lines = [
        "# TYPE sf_forecasts_total counter",
        f"sf_forecasts_total {forecasts}",
        "# TYPE sf_active_keys gauge",
        "sf_active_keys 10",
        "# TYPE sf_model_loaded gauge",
        "sf_model_loaded 1",
        "# TYPE sf_model_info gauge",
        f'sf_model_info{{name="m",version="{version}"}} 1',
        "# TYPE sf_end_to_end_latency_seconds histogram",
    ]
    lines += [f'sf_end_to_end_latency_seconds_bucket{{le="{le}"}} {n}' for le, n in buckets.items()]
    lines += [
        f"sf_end_to_end_latency_seconds_count {buckets['+Inf']}",
        "sf_end_to_end_latency_seconds_sum 1.0",
    ]
    return "\n".join(lines) + "\n"


def snapshot(at: float, *texts: str) -> Snapshot:
    s = Snapshot(at=at)
    for text in texts:
        parse(text, s)
        s.up += 1
    return s


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {0.1: 50, 0.2: 100, INF: 100}, 0.1),
        (0.75, {0.1: 50, 0.2: 100, INF: 100}, 0.15),  # halfway into the second bucket
        (0.25, {0.1: 50, 0.2: 100, INF: 100}, 0.05),  # the first bucket starts at 0
        (0.99, {0.1: 10, 0.2: 10, INF: 20}, 0.2),  # in +Inf: the highest finite bound
        (0.5, {0.1: 0, INF: 0}, None),  # no observations
        (0.5, {}, None),
    ],
)
def test_histogram_quantile(q: float, buckets: dict[float, float], expected: float | None) -> None:
    got = histogram_quantile(q, buckets)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_rates_and_quantiles_over_the_interval() -> None:
    before = snapshot(0.0, exposition(100, {"0.01": 90, "0.1": 100, "+Inf": 100}))
    after = snapshot(2.0, exposition(300, {"0.01": 90, "0.1": 300, "+Inf": 300}))
    s = summarize(before, after)
    assert s["forecasts_per_s"] == pytest.approx(100)
    # all 200 new observations fell in (0.01, 0.1]: the median is halfway
    assert s["latency_p50"] == pytest.approx(0.055)
    assert s["keys"] == 10
    assert s["versions"] == ["v1"]


def test_a_counter_reset_is_not_a_negative_rate() -> None:
    before = snapshot(0.0, exposition(1000, {"0.1": 10, "+Inf": 10}))
    after = snapshot(1.0, exposition(40, {"0.1": 4, "+Inf": 4}))  # the process restarted
    s = summarize(before, after)
    assert s["forecasts_per_s"] == pytest.approx(40)
    assert s["latency_p99"] is not None


def test_several_instances_are_summed() -> None:
    s = snapshot(0.0, exposition(5, {"+Inf": 1}, "v1"), exposition(7, {"+Inf": 1}, "v2"))
    assert s.counters["sf_forecasts_total"] == 12
    assert s.gauges["sf_active_keys"] == 20
    assert s.versions == {"v1", "v2"}


def test_an_unreachable_instance_is_down_not_an_error() -> None:
    s = scrape([f"http://127.0.0.1:{free_port()}/metrics"], timeout=0.5)
    assert (s.up, s.down) == (0, 1)
    line = format_line(summarize(s, scrape([f"http://127.0.0.1:{free_port()}/metrics"])))
    assert "waiting for a model" in line
    assert "1 instance(s) down" in line
