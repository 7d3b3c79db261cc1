"""Resident memory per active key of ``serve``'s state, at 100,000 and 1,000,000 keys.

Each size runs in a fresh Python process (``python -m benchmarks.memory --keys N``) that
holds exactly what a forecaster holds per key: ``serve``'s own pipeline
(:class:`~stream_forecaster.serving.pipeline.BatchProcessor`) with an ONNX Runtime engine, window
24 x 8 features. Every key gets a full window (loaded as a changelog snapshot, the restore
path) and then one reading through ``process()``, so that each key also has a forecast
pending its actual value (online scoring) and its partition recorded. The resident set
size (``VmRSS``) is read after a warm-up batch of other keys and again at the end; the
difference divided by the number of keys is the memory per active key. Issue #7's target:
at most 2 KB per key (1,000,000 keys under 2.5 GB resident).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.harness import FEATURE_NAMES, FEATURES, WINDOW

SIZES = (100_000, 1_000_000)
TARGET_BYTES_PER_KEY = 2048
TARGET_RESIDENT_AT_1M = 2.5e9
_BATCH = 1024
_INTERVAL_MS = 60_000
_START_TS = 1_700_000_000_000


def resident_bytes() -> int:
    """This process's resident set size (Linux ``/proc/self/status``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _measure(keys: int, bundle_path: Path, progress: Callable[[str], None]) -> dict[str, float]:
    """Fill a BatchProcessor with ``keys`` active keys; RSS before and after (this process)."""

    from stream_forecaster.model.bundle import ModelBundle
    from stream_forecaster.serving.engine import InferenceEngine
    from stream_forecaster.serving.pipeline import BatchProcessor
    from stream_forecaster.settings import Settings
    from stream_forecaster.wire.readings import encode_reading
    from stream_forecaster.wire.records import Record

    bundle = ModelBundle.load(bundle_path)
    features = bundle.manifest.features
    window = bundle.manifest.window
    settings = Settings(windows={"interval_ms": _INTERVAL_MS})
    processor = BatchProcessor(settings)
    processor.use_engine(InferenceEngine(bundle, threads=1))
    store = processor.store
    assert store is not None
    rng = np.random.default_rng(0)

    # One full window's snapshot, loaded under every key (snapshots do not name the key).
    last_ts = _START_TS + (window - 1) * _INTERVAL_MS
    for step in range(window):
        row = rng.normal(size=len(features)).astype(np.float32)
        store.update("template", _START_TS + step * _INTERVAL_MS, row, now=0.0)
    snapshot = store.snapshot("template")
    store.drop("template")
    value = encode_reading("k", last_ts + _INTERVAL_MS, dict.fromkeys(features, 1.5))[1]

    def fill(names: list[str]) -> None:
        processor.load_windows(0, dict.fromkeys(names, snapshot))
        records = [Record("in", 0, i, 0, name.encode(), value) for i, name in enumerate(names)]
        out = processor.process(records)
        if len(out.forecasts) != len(names):
            raise RuntimeError(f"expected {len(names)} forecasts, got {len(out.forecasts)}")

    fill([f"warm-{i}" for i in range(_BATCH)])  # code paths, arenas and caches warmed up
    before = resident_bytes()
    started = time.monotonic()
    for start in range(0, keys, _BATCH):
        fill([f"sensor-{i:07d}" for i in range(start, min(keys, start + _BATCH))])
        if (start // _BATCH) % 100 == 99:
            progress(f"{start + _BATCH:,} of {keys:,} keys ({time.monotonic() - started:.0f}s)")
    after = resident_bytes()
    if processor.scorer.n_pending < keys:
        raise RuntimeError(f"expected {keys} pending forecasts, got {processor.scorer.n_pending}")
    return {
        "keys": keys,
        "before": before,
        "after": after,
        "per_key": (after - before) / keys,
        "store_bytes_per_key": store.bytes_per_key(),
        "seconds": time.monotonic() - started,
    }


def run(report: Callable[[str], None] = print) -> str:
    """Measure each size in its own process; return the Markdown section."""
    from stream_forecaster.model.untrained import untrained_bundle

    work = Path(tempfile.mkdtemp(prefix="sf-bench-memory-"))
    bundle_path = untrained_bundle(FEATURE_NAMES, WINDOW).save(work)
    results = []
    for keys in SIZES:
        report(f"{keys:,} keys (a fresh process)")
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--keys", str(keys), str(bundle_path)],
            stdout=subprocess.PIPE,
            text=True,
            check=True,
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
        report(
            f"  {result['per_key']:,.0f} bytes per key; resident {result['after'] / 1e6:,.0f} MB"
        )
        results.append(result)
    lines = [
        f"`serve`'s pipeline in a fresh process per size, window {WINDOW} x {FEATURES} "
        "features: every key has a full window (restored from a changelog snapshot), one "
        "forecast pending its actual value and its partition recorded. Per key: growth of "
        "the resident set (VmRSS) over the process after a warm-up, divided by the keys. "
        "Baseline: the window's own values, "
        f"{WINDOW * FEATURES * 4:,} bytes (float32).",
        "",
        "| active keys | resident before | resident after | per key | vs the values alone |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['keys']:,} | {r['before'] / 1e6:,.0f} MB | {r['after'] / 1e6:,.0f} MB | "
            f"{r['per_key']:,.0f} B | {r['per_key'] / (WINDOW * FEATURES * 4):.2f}x |"
        )
    worst = max(r["per_key"] for r in results)
    at_1m = next((r["after"] for r in results if r["keys"] == 1_000_000), None)
    lines += ["", "Targets (issue #7), in this run:", ""]
    verdict = (
        "met"
        if worst <= TARGET_BYTES_PER_KEY
        else f"missed by {worst / TARGET_BYTES_PER_KEY - 1:.0%}"
    )
    lines.append(f"- at most 2 KB per active key: {worst:,.0f} B at worst, {verdict}")
    if at_1m is not None:
        verdict = (
            "met"
            if at_1m < TARGET_RESIDENT_AT_1M
            else f"missed by {at_1m / TARGET_RESIDENT_AT_1M - 1:.0%}"
        )
        lines.append(
            f"- 1,000,000 keys under 2.5 GB resident: {at_1m / 1e9:.2f} GB for the whole "
            f"process, {verdict}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory", description=__doc__)
    parser.add_argument("--keys", type=int, required=True)
    parser.add_argument("bundle", type=Path)
    args = parser.parse_args()

    def progress(line: str) -> None:
        print("    " + line, file=sys.stderr, flush=True)

    print(json.dumps(_measure(args.keys, args.bundle, progress)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
