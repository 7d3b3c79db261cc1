"""One poll's worth of records in, forecasts and dead letters out: the pure processing step.

Top to bottom, for each record of a batch: decode and validate -> update the key's window
-> if the window is ready, queue it; then ONE batched inference call for all queued
windows -> forecast records -> a snapshot of every changed window for the changelog.
No Kafka client in here: the service sends what this returns and commits the offsets it
reports. The processor also knows which input partition each key came from, so that the
service can drop (on revoke) and load (on assignment) the windows of whole partitions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stream_forecaster.dead_letter import dead_letter
from stream_forecaster.engine import InferenceEngine
from stream_forecaster.messages import Forecast, InvalidRecord, check_features, decode_reading
from stream_forecaster.metrics import ServiceMetrics
from stream_forecaster.records import InputRecord, OutputRecord
from stream_forecaster.scoring import OnlineScorer
from stream_forecaster.settings import Settings
from stream_forecaster.windows import SnapshotError, WindowStore

log = logging.getLogger(__name__)


@dataclass
class BatchOutput:
    """What one batch produced.

    Args:
        forecasts: forecast records, in input order.
        dead_letters: rejected input records, in input order.
        changelog: one snapshot per window the batch changed, to the changelog partition
            that mirrors the key's input partition (empty when the changelog is off).
        offsets: per (topic, partition), the next offset to commit.
    """

    forecasts: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    changelog: list[OutputRecord] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass
class _Pending:
    key: str
    window_end_ts: int
    forecast_ts: int
    source_timestamp_ms: int
    persistence: float


class BatchProcessor:
    """Turns batches of input records into forecasts, keeping the windows of every key.

    Args:
        settings: the service settings (topics, windows, limits).
        metrics: where to count what happens.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: ServiceMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.engine: InferenceEngine | None = None
        self.store: WindowStore | None = None
        self.partition_of: dict[str, int] = {}
        self.changelog_topic = settings.changelog_topic() if settings.state.changelog else None
        self.scorer = OnlineScorer.from_settings(settings.scoring)
        self._unscored_seen = dict(self.scorer.unscored)

    def use_engine(self, engine: InferenceEngine) -> None:
        """Serve with ``engine`` from the next batch on.

        Windows are kept when the new model reads the same features and window length;
        otherwise they start afresh (and the change is logged).
        """
        same_shape = (
            self.engine is not None
            and self.engine.features == engine.features
            and self.engine.window == engine.window
        )
        self.engine = engine
        if same_shape and self.store is not None:
            return
        if self.store is not None and len(self.store):
            log.warning(
                "model %s reads different features or window length: %d windows start afresh",
                engine.version,
                len(self.store),
            )
        w = self.settings.windows
        self.store = WindowStore(
            engine.window,
            len(engine.features),
            interval_ms=w.interval_ms,
            max_gap=w.max_gap,
            gap_policy=w.gap_policy,
            late_tolerance_ms=w.late_tolerance_ms,
        )
        self.partition_of.clear()
        self.metrics.active_keys.set(0)

    def process(self, records: Sequence[InputRecord]) -> BatchOutput:
        """Process one batch; see the module docstring for the order of things.

        Raises:
            RuntimeError: no engine set yet (the service waits for a model first).
        """
        if self.engine is None or self.store is None:
            raise RuntimeError("no model loaded: call use_engine() first")
        engine, store = self.engine, self.store
        features = engine.features
        topics = self.settings.topics
        max_bytes = self.settings.processing.max_record_bytes
        now = self.clock()
        out = BatchOutput()
        pending: list[_Pending] = []
        windows: list[npt.NDArray[np.float32]] = []
        changed: dict[str, int] = {}
        actuals: dict[tuple[str, int], float] = {}  # this batch's target values
        for record in records:
            out.offsets[(record.topic, record.partition)] = record.offset + 1
            self.metrics.records.labels(topic=record.topic).inc()
            try:
                reading = decode_reading(record.key, record.value, max_bytes=max_bytes)
                check_features(reading, features, where=f"{reading.key}@offset {record.offset}")
            except InvalidRecord as error:
                self.metrics.records_invalid.labels(reason=error.reason).inc()
                out.dead_letters.append(dead_letter(record, error, topics.dead_letter))
                continue
            row = np.fromiter(
                (math.nan if (v := reading.values[f]) is None else v for f in features),
                dtype=np.float32,
                count=len(features),
            )
            # The actual value for a forecast held for this (key, ts), if any.
            actual = float(row[engine.target_index])
            self.scorer.observe(reading.key, reading.ts, actual)
            actuals[(reading.key, reading.ts)] = actual
            update = store.update(reading.key, reading.ts, row, now)
            if update.outcome != "appended":
                self.metrics.readings_ignored.labels(rule=update.outcome).inc()
                continue
            changed[reading.key] = self.partition_of[reading.key] = record.partition
            if update.gap != "none":
                self.metrics.window_gaps.labels(action=update.gap).inc()
            if update.ready:
                window = store.window_of(update.slot)
                windows.append(window)
                pending.append(
                    _Pending(
                        key=reading.key,
                        window_end_ts=reading.ts,
                        forecast_ts=reading.ts + store.interval(update.slot),
                        source_timestamp_ms=record.timestamp,
                        persistence=float(window[-1, engine.target_index]),
                    )
                )
        if pending:
            out.forecasts = self._forecast(engine, pending, np.stack(windows), actuals)
        if self.changelog_topic is not None:
            out.changelog = [
                self._changelog_record(key, partition, store.snapshot(key))
                for key, partition in changed.items()
            ]
        self.metrics.active_keys.set(len(store))
        self._export_scores()
        return out

    def _changelog_record(self, key: str, partition: int, value: bytes | None) -> OutputRecord:
        assert self.changelog_topic is not None
        return OutputRecord(self.changelog_topic, key.encode(), value, partition=partition)

    def _intervals(
        self,
        engine: InferenceEngine,
        windows: npt.NDArray[np.float32],
        values: npt.NDArray[np.float64],
    ) -> tuple[npt.NDArray[np.float64] | None, npt.NDArray[np.float64] | None]:
        """Prediction interval bounds at the configured coverage (None while the conformal
        calibration has too few errors)."""
        s = self.settings.scoring
        if s.interval_method == "mc_dropout":
            samples = engine.dropout_samples(windows, s.mc_samples)
            tail = (1 - s.coverage) / 2
            low, high = np.quantile(samples, [tail, 1 - tail], axis=1)
            return np.minimum(low, values), np.maximum(high, values)
        bounds = self.scorer.intervals(values)
        return (None, None) if bounds is None else bounds

    def _export_scores(self) -> None:
        """Online accuracy per model version, unscored counts, calibration."""
        m, scorer = self.metrics, self.scorer
        kept = set(scorer.versions())
        for version in m.scored_versions - kept:
            for gauge in m.online_by_version:
                with contextlib.suppress(KeyError):
                    gauge.remove(version)
        m.scored_versions = kept
        for version in kept:
            stats = scorer.stats(version)
            if stats is None:
                continue
            m.online_mae.labels(version).set(stats.mae)
            m.online_rmse.labels(version).set(stats.rmse)
            m.online_persistence_mae.labels(version).set(stats.persistence_mae)
            m.online_scored.labels(version).set(stats.n)
            if stats.skill is not None:
                m.online_skill.labels(version).set(stats.skill)
            if stats.coverage is not None:
                m.interval_coverage.labels(version).set(stats.coverage)
        for reason, count in scorer.unscored.items():
            delta = count - self._unscored_seen.get(reason, 0)
            if delta > 0:
                m.forecasts_unscored.labels(reason=reason).inc(delta)
        self._unscored_seen = dict(scorer.unscored)
        m.forecasts_pending.set(scorer.n_pending)
        half_width = scorer.half_width()
        if half_width is not None:
            m.interval_half_width.set(half_width)

    # -- state of whole partitions ---------------------------------------------------------

    def forget_partitions(self, partitions: Collection[int]) -> int:
        """Drop the windows of every key that came from ``partitions``; returns how many."""
        if self.store is None:
            return 0
        gone = [k for k, p in self.partition_of.items() if p in partitions]
        for key in gone:
            self.store.drop(key)
            del self.partition_of[key]
            self.scorer.forget(key)
        self.metrics.active_keys.set(len(self.store))
        return len(gone)

    def load_windows(self, partition: int, snapshots: dict[str, bytes]) -> int:
        """Load restored snapshots of keys from input ``partition``; returns how many loaded.

        A snapshot that does not fit the current model's window shape is skipped (logged
        and counted): the key warms up afresh.
        """
        if self.store is None:
            raise RuntimeError("no model loaded: call use_engine() first")
        now = self.clock()
        loaded = 0
        for key, data in snapshots.items():
            try:
                self.store.load_snapshot(key, data, now)
            except SnapshotError as exc:
                self.metrics.state_snapshots_skipped.inc()
                log.warning("window of %s not restored: %s", key, exc)
                continue
            self.partition_of[key] = partition
            loaded += 1
        self.metrics.active_keys.set(len(self.store))
        return loaded

    def _forecast(
        self,
        engine: InferenceEngine,
        pending: list[_Pending],
        windows: npt.NDArray[np.float32],
        actuals: dict[tuple[str, int], float],
    ) -> list[OutputRecord]:
        started = time.perf_counter()
        values = engine.forecast(windows)
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(pending))
        lower, upper = self._intervals(engine, windows, values)
        target = engine.bundle.manifest.target
        topic = self.settings.topics.output
        records = []
        for i, (item, value) in enumerate(zip(pending, values.tolist(), strict=True)):
            low = None if lower is None or not math.isfinite(lower[i]) else float(lower[i])
            high = None if upper is None or not math.isfinite(upper[i]) else float(upper[i])
            if low is None or high is None:
                low = high = None
            if not math.isfinite(value):
                self.metrics.forecasts_non_finite.inc()
                log.warning(
                    "model %s gave a non-finite forecast for %s@%d; not published",
                    engine.version,
                    item.key,
                    item.window_end_ts,
                )
                continue
            forecast = Forecast(
                key=item.key,
                ts=item.forecast_ts,
                target=target,
                forecast=value,
                lower=low,
                upper=high,
                model_version=engine.version,
                window_end_ts=item.window_end_ts,
            )
            if math.isfinite(item.persistence):
                self.scorer.expect(
                    item.key,
                    item.forecast_ts,
                    value,
                    item.persistence,
                    engine.version,
                    lower=low,
                    upper=high,
                )
                # Its actual may have come later in this same batch (catching up).
                if (actual := actuals.get((item.key, item.forecast_ts))) is not None:
                    self.scorer.observe(item.key, item.forecast_ts, actual)
            records.append(
                OutputRecord(
                    topic=topic,
                    key=item.key.encode(),
                    value=forecast.to_json_bytes(),
                    source_timestamp_ms=item.source_timestamp_ms,
                )
            )
        return records

    def evict_idle(self) -> list[OutputRecord]:
        """Evict keys idle longer than the TTL; returns their changelog tombstones."""
        if self.store is None:
            return []
        evicted = self.store.evict_idle(self.clock(), self.settings.windows.key_ttl_s)
        partitions = [self.partition_of.pop(key, None) for key in evicted]
        for key in evicted:
            self.scorer.forget(key)
        if evicted:
            self.metrics.keys_evicted.inc(len(evicted))
            self.metrics.active_keys.set(len(self.store))
            log.info(
                "evicted %d keys idle for more than %.0fs",
                len(evicted),
                self.settings.windows.key_ttl_s,
            )
        if self.changelog_topic is None:
            return []
        return [
            self._changelog_record(key, partition, None)
            for key, partition in zip(evicted, partitions, strict=True)
            if partition is not None
        ]
