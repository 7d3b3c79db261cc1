"""Restoring window state on assignment: how long ``serve`` takes to get the windows of
100,000 keys back from the changelog, against a bare read of the same topic.

Runs on the real local broker (started here with ``deploy/kafka/kafka-local`` on free
ports, or the cluster named by ``SF_BENCH_BOOTSTRAP``). The changelog is filled with real
snapshots (window 24, 8 features, 884 bytes each), committed in transactions as
``exactly_once`` writes them. The restore is the code path ``serve`` runs on assignment:
:class:`~stream_forecaster.state.changelog.ChangelogReader` then
:meth:`~stream_forecaster.serving.pipeline.BatchProcessor.load_windows`. The baseline in the same
run is a plain kafka-python consumer reading the same records without decoding them: the
client's ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from benchmarks.harness import FEATURE_NAMES, FEATURES, WINDOW, bench_bootstrap
from stream_forecaster.kafka.clients import client_config
from stream_forecaster.model.untrained import untrained_bundle
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.settings import Settings
from stream_forecaster.state.changelog import ChangelogReader, ensure_changelog_topic
from stream_forecaster.state.windows import WindowStore

PARTITIONS = 6
TARGET_S = 10.0


def _fill(settings: Settings, keys: int, report: Callable[[str], None]) -> int:
    """Write one full-window snapshot per key; returns the bytes written."""
    store = WindowStore(WINDOW, FEATURES, capacity=1)
    rng = np.random.default_rng(0)
    for i in range(WINDOW):
        store.update("template", i * 60_000, rng.standard_normal(FEATURES).astype(np.float32), 0)
    snapshot = store.snapshot("template")
    producer = KafkaProducer(
        **client_config(settings.kafka),
        transactional_id="sf-bench-restore",
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
    )
    producer.init_transactions()
    topic, started, step = settings.changelog_topic(), time.monotonic(), 10_000
    for first in range(0, keys, step):
        producer.begin_transaction()
        for k in range(first, min(first + step, keys)):
            producer.send(
                topic, key=f"sensor-{k:07d}".encode(), value=snapshot, partition=k % PARTITIONS
            )
        producer.commit_transaction()
        report(f"  changelog: {min(first + step, keys):,} of {keys:,} snapshots written")
    producer.close()
    report(f"  written in {time.monotonic() - started:.1f}s")
    return keys * len(snapshot)


def _bare_read(settings: Settings, total: int) -> float:
    consumer = KafkaConsumer(
        **client_config(settings.kafka),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=100_000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    tps = [TopicPartition(settings.changelog_topic(), p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    started, seen = time.perf_counter(), 0
    while seen < total:
        seen += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
    elapsed = time.perf_counter() - started
    consumer.close()
    return elapsed


def _restore(settings: Settings, engine: InferenceEngine) -> tuple[float, int]:
    processor = BatchProcessor(settings)
    processor.use_engine(engine)
    reader = ChangelogReader(settings)
    started = time.perf_counter()
    by_partition = reader.read(range(PARTITIONS))
    loaded = sum(processor.load_windows(p, s).windows for p, s in by_partition.items())
    elapsed = time.perf_counter() - started
    reader.close()
    return elapsed, loaded


def run(keys: int = 100_000, report: Callable[[str], None] = print) -> str:
    """Measure and return the Markdown section for docs/benchmarks.md."""
    with bench_bootstrap(report) as bootstrap:
        settings = Settings(
            kafka={"bootstrap_servers": bootstrap},
            processing={"group_id": f"bench-{time.time_ns()}"},
        )
        ensure_changelog_topic(settings, PARTITIONS)
        size = _fill(settings, keys, report)
        engine = InferenceEngine(untrained_bundle(FEATURE_NAMES, WINDOW))
        bare = _bare_read(settings, keys)
        report(f"  bare kafka-python read of {keys:,} records: {bare:.2f}s")
        restore, loaded = _restore(settings, engine)
        report(f"  restore of {loaded:,} windows: {restore:.2f}s")
    verdict = "met" if restore <= TARGET_S else f"missed by {restore / TARGET_S - 1:.0%}"
    return "\n".join(
        [
            f"{keys:,} keys, window {WINDOW} x {FEATURES} features: {size / 1e6:.1f} MB of "
            f"snapshots in a {PARTITIONS}-partition changelog, committed in transactions.",
            "",
            "| what | seconds | keys/s | vs bare read |",
            "|---|---:|---:|---:|",
            f"| bare kafka-python read (baseline) | {bare:.2f} | {keys / bare:,.0f} | 1.00x |",
            f"| restore as `serve` does it | {restore:.2f} | {loaded / restore:,.0f} | "
            f"{restore / bare:.2f}x |",
            "",
            f"Target (issue #4): restoring 100,000 keys takes at most {TARGET_S:.0f} s: "
            f"{restore:.2f} s, {verdict}.",
        ]
    )
