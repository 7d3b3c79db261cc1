"""Hot swap under load: end-to-end latency while ``serve`` swaps models, against the same
process's steady state measured just before, in the same run.

A real ``serve`` process (window 24, 8 features, 200 keys) on the real local broker gets a
steady feed. The p99 of ``sf_end_to_end_latency_seconds`` is taken from /metrics over a
steady period, then over a period in which new model bundles are published to the model
topic (each swap builds an engine in the background). Issue #5's target:
p99 during swaps at most 2x steady state, no record skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchmarks.harness import (
    FEATURE_NAMES,
    FEATURES,
    WINDOW,
    BenchServe,
    bench_bootstrap,
    produce_paced,
    quantile_between,
)
from stream_forecaster.model.topic import publish_bundle
from stream_forecaster.model.untrained import untrained_bundle
from stream_forecaster.settings import Settings
from stream_forecaster.wire.readings import encode_reading

KEYS, RATE, PERIOD_S, SWAPS = 200, 400.0, 20.0, 3
TARGET_RATIO = 2.0


def run(report: Callable[[str], None] = print) -> str:
    """Measure and return the Markdown section for docs/benchmarks.md."""
    with bench_bootstrap(report) as bootstrap:
        return _measure(bootstrap, report)


def _measure(bootstrap: str, report: Callable[[str], None]) -> str:
    models_topic = f"bench-models-{time.time_ns()}"
    serve = BenchServe(bootstrap, "swap", 3, {"SF_TOPICS__MODELS": models_topic})
    settings = Settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"models": models_topic},
    )
    total = int(RATE * (3 * PERIOD_S + 10))
    items = [
        encode_reading(
            f"s{i % KEYS:04d}",
            1_700_000_000_000 + (i // KEYS) * 60_000,
            {f"f{j}": float((i * 7 + j) % 13) for j in range(FEATURES)},
        )
        for i in range(total)
    ]
    try:
        serve.start().wait_ready(timeout=180)
        feed = produce_paced(bootstrap, serve.input_topic, items, per_second=RATE)
        report(f"feeding {RATE:.0f} readings/s from {KEYS} keys; warming up {PERIOD_S:.0f}s")
        time.sleep(PERIOD_S)  # warm-up: a duration of the benchmark, not an awaited event
        start = serve.buckets()
        time.sleep(PERIOD_S)
        steady_end = serve.buckets()
        report(f"steady p99 measured; now {SWAPS} swaps over {PERIOD_S:.0f}s")
        versions = []
        for n in range(SWAPS):
            bundle = untrained_bundle(FEATURE_NAMES, WINDOW, seed=n + 1, name="bench")
            publish_bundle(settings, bundle, None)
            versions.append(bundle.version)
            time.sleep(PERIOD_S / SWAPS)  # spacing the swaps
            report(f"  swap {n + 1}/{SWAPS}: published {bundle.version}")
        swap_end = serve.buckets()
        served = serve.metric("sf_model_info", {"version": versions[-1]})
        feed.join(timeout=120)
        records = serve.metric("sf_records_total") or 0
    finally:
        serve.close()
    steady = quantile_between(0.99, start, steady_end)
    swapping = quantile_between(0.99, steady_end, swap_end)
    ratio = swapping / steady
    verdict = "met" if ratio <= TARGET_RATIO else f"missed by {ratio / TARGET_RATIO - 1:.0%}"
    report(f"p99 steady {steady * 1000:.1f} ms, during swaps {swapping * 1000:.1f} ms")
    return "\n".join(
        [
            f"One `serve` process, window {WINDOW} x {FEATURES} features, {KEYS} keys, "
            f"{RATE:.0f} readings/s; {SWAPS} new bundles published to the model topic "
            f"within {PERIOD_S:.0f} s. p99 from the `sf_end_to_end_latency_seconds` "
            "histogram (bucket interpolation, as PromQL's histogram_quantile).",
            "",
            "| period | p99 end-to-end latency | vs steady |",
            "|---|---:|---:|",
            f"| steady ({PERIOD_S:.0f} s, baseline) | {steady * 1000:.1f} ms | 1.00x |",
            f"| {SWAPS} swaps ({PERIOD_S:.0f} s) | {swapping * 1000:.1f} ms | {ratio:.2f}x |",
            "",
            f"Target (issue #5): p99 during a swap at most {TARGET_RATIO:.0f}x steady: "
            f"{ratio:.2f}x, {verdict}. The last bundle was being served at the end: "
            f"{'yes' if served == 1 else 'no'}; records consumed: {records:,.0f} of "
            f"{total:,} fed.",
        ]
    )
