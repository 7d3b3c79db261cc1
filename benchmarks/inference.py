"""Inference throughput of the seed LSTM (T=24, 8 features) against the arithmetic bound.

Compares, at several batch sizes, forecasts per second of:
- per-record ``model.predict`` (what hand-written consumers do: the baseline),
- a plain eager ``model(x)`` call on the whole batch,
- the Keras model in a ``tf.function`` compiled with XLA (the best TensorFlow offers here;
  the project's engine used it until ONNX Runtime measured faster),
- the project's :class:`~stream_forecaster.serving.engine.InferenceEngine` (what ``serve`` calls:
  scaling in and out around one ONNX Runtime call),
and relates each to the machine's float32 matmul rate measured in the same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np

from benchmarks.harness import FEATURE_NAMES, FEATURES, WINDOW
from stream_forecaster.model.network import import_keras
from stream_forecaster.model.untrained import untrained_bundle
from stream_forecaster.serving.engine import InferenceEngine

UNITS = 50
BATCHES = (1, 8, 64, 256, 1024)
FLOPS_PER_FORECAST = 2 * WINDOW * 4 * UNITS * (FEATURES + UNITS)


def _rate(call: Callable[[], Any], items_per_call: int, seconds: float) -> float:
    """Items per second of ``call``, after one warm-up call, for about ``seconds``."""
    call()
    done, started = 0, time.perf_counter()
    while True:
        call()
        done += items_per_call
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def _xla(model: Any) -> Callable[[np.ndarray], Any]:
    """The Keras model in a ``tf.function`` with a fixed input signature, compiled with
    XLA; inputs padded to the next power of two so that a few shapes are compiled."""
    import tensorflow as tf

    spec = tf.TensorSpec((None, WINDOW, FEATURES), tf.float32)
    compiled = tf.function(
        lambda x: model(x, training=False), input_signature=[spec], jit_compile=True
    )

    def call(x: np.ndarray) -> Any:
        padded = np.zeros((1 << max(0, len(x) - 1).bit_length(), WINDOW, FEATURES), np.float32)
        padded[: len(x)] = x
        return np.asarray(compiled(padded))[: len(x)]

    return call


ROUNDS = 3


def _interleaved(calls: Sequence[Callable[[], Any]], items: int, seconds: float) -> list[float]:
    """The best rate of each call over ``ROUNDS`` rounds that take turns (the machine's
    speed drifts: each call gets its share of the fast and the slow moments)."""
    best = [0.0] * len(calls)
    for _ in range(ROUNDS):
        for i, call in enumerate(calls):
            best[i] = max(best[i], _rate(call, items, seconds / ROUNDS))
    return best


def matmul_flops(seconds: float = 1.0) -> float:
    """The machine's float32 matmul rate (FLOP/s): the faster of TensorFlow and NumPy on
    512x512 products (the higher rate makes the stricter bound)."""
    import tensorflow as tf

    a = tf.random.normal((512, 512))
    b = tf.random.normal((512, 512))
    product = tf.function(lambda: tf.linalg.matmul(a, b))
    an, bn = a.numpy(), b.numpy()
    calls: list[Callable[[], Any]] = [lambda: product().numpy(), lambda: an @ bn]
    return max(_interleaved(calls, 2 * 512**3, 2 * seconds))


def run(seconds: float = 1.0, report: Callable[[str], None] = print) -> str:
    """Measure and return the results as a Markdown table."""
    import_keras()
    bundle = untrained_bundle(FEATURE_NAMES, WINDOW)
    model = bundle.build_model()
    rng = np.random.default_rng(0)
    flops = matmul_flops(seconds)  # the best of its rounds: the stricter bound
    bound = flops / FLOPS_PER_FORECAST
    report(f"float32 matmul: {flops / 1e9:.1f} GFLOP/s -> bound {bound:,.0f} forecasts/s")

    engines = {
        "engine, 1 thread (serve's default)": InferenceEngine(bundle, threads=1),
        "engine, 2 threads": InferenceEngine(bundle, threads=0),
    }
    xla = _xla(model)
    one = rng.normal(size=(1, WINDOW, FEATURES)).astype(np.float32)
    baseline = _rate(lambda: model.predict(one, verbose=0), 1, seconds)
    report(f"per-record model.predict: {baseline:,.0f} forecasts/s")

    columns = ["`model(x)`", "`tf.function` + XLA", *engines]
    rows: list[tuple[int, list[float]]] = []
    for batch in BATCHES:
        x = rng.normal(size=(batch, WINDOW, FEATURES)).astype(np.float32)
        calls = [
            partial(lambda x: model(x, training=False).numpy(), x),
            partial(xla, x),
            *(partial(engine.forecast, x) for engine in engines.values()),
        ]
        rates = _interleaved(calls, batch, seconds)
        rows.append((batch, rates))
        shown = "   ".join(f"{c} {r:>9,.0f}/s" for c, r in zip(columns, rates, strict=True))
        report(f"batch {batch:>5}: {shown}")

    lines = [
        f"Seed LSTM, window {WINDOW}, {FEATURES} features; {FLOPS_PER_FORECAST:,} FLOP per "
        f"forecast. Machine float32 matmul rate in this run: {flops / 1e9:.1f} GFLOP/s, so the "
        f"arithmetic bound is **{bound:,.0f} forecasts/s**.",
        "",
        f"Baseline, per-record `model.predict`: **{baseline:,.0f} forecasts/s** "
        f"({100 * baseline / bound:.3f}% of the bound). Each cell: forecasts/s (the best of "
        f"{ROUNDS} rounds that take turns: the machine's speed drifts), its ratio to the "
        "baseline, its share of the bound.",
        "",
        "| batch | " + " | ".join(columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for batch, rates in rows:
        cells = [f"{r:,.0f} ({r / baseline:,.0f}x, {100 * r / bound:.1f}%)" for r in rates]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    names = list(engines)

    def best(batch: int) -> tuple[float, str]:
        """The faster engine configuration at ``batch``: (forecasts/s, its name)."""
        rates = dict(rows)[batch][-len(names) :]
        i = max(range(len(names)), key=lambda j: rates[j])
        return rates[i], names[i]

    checks: list[tuple[str, int, Callable[[float], float], float, str]] = [
        ("engine at batch 256 >= 40% of the bound", 256, lambda r: 100 * r / bound, 40.0, "%"),
        ("engine at batch 1 >= 10,000 forecasts/s", 1, lambda r: r, 10_000.0, "/s"),
        ("engine at batch 256 >= 5,000x per-record predict", 256, lambda r: r / baseline, 5e3, "x"),
    ]
    lines += ["", "Targets (issue #7), in this run, each with the faster engine configuration:", ""]
    for name, batch, measure, target, unit in checks:
        rate, engine_name = best(batch)
        value = measure(rate)
        verdict = "met" if value >= target else f"missed by {100 * (1 - value / target):.0f}%"
        lines.append(f"- {name}: {value:,.1f}{unit} ({engine_name}), {verdict}")
    return "\n".join(lines)
