"""One poll's worth of records in, forecasts and dead letters out: the pure processing step.

Top to bottom, for each record of a batch: decode and validate -> update the key's window
-> if the window is ready, queue it; then ONE batched inference call for all queued
windows -> forecast records; the keys whose windows changed are reported, and
:meth:`BatchProcessor.changelog` snapshots them at the checkpoint. No Kafka client in
here: the service sends what this returns and commits the offsets it reports. The
processor also knows which input partition each key came from, so that the service can
drop (on revoke) and load (on assignment) the windows of whole partitions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import operator
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stream_forecaster.dead_letter import dead_letter
from stream_forecaster.engine import InferenceEngine
from stream_forecaster.messages import (
    InvalidRecord,
    check_features,
    decode_reading_fields,
    encode_forecast,
)
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
        changed: key -> input partition of every window the batch changed (for the
            changelog, written at the checkpoint: :meth:`BatchProcessor.changelog`).
        offsets: per (topic, partition), the next offset to commit.
    """

    forecasts: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    changed: dict[str, int] = field(default_factory=dict)
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
        in_model_order = _getter(features)
        topics = self.settings.topics
        max_bytes = self.settings.processing.max_record_bytes
        now = self.clock()
        out = BatchOutput()
        pending: list[_Pending] = []
        windows: list[npt.NDArray[np.float32]] = []
        changed: dict[str, int] = {}
        actuals: dict[tuple[str, int], float] = {}  # this batch's target values
        per_topic: dict[str, int] = {}
        for record in records:
            out.offsets[(record.topic, record.partition)] = record.offset + 1
            per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
            try:
                key, ts, values = decode_reading_fields(
                    record.key, record.value, max_bytes=max_bytes
                )
                check_features(values, features, where=f"{key}@offset {record.offset}")
            except InvalidRecord as error:
                self.metrics.records_invalid.labels(reason=error.reason).inc()
                out.dead_letters.append(dead_letter(record, error, topics.dead_letter))
                continue
            # In model order; numpy turns None (not measured) into NaN.
            ordered = in_model_order(values)
            row = np.array(ordered, dtype=np.float32)
            # The actual value for a forecast held for this (key, ts), if any.
            actual = float(row[engine.target_index])
            self.scorer.score(key, ts, actual)
            actuals[(key, ts)] = actual
            update = store.update(key, ts, row, now, None in ordered)
            if update.outcome != "appended":
                self.metrics.readings_ignored.labels(rule=update.outcome).inc()
                continue
            changed[key] = self.partition_of[key] = record.partition
            if update.gap != "none":
                self.metrics.window_gaps.labels(action=update.gap).inc()
            if update.ready:
                window = store.window_of(update.slot)
                windows.append(window)
                pending.append(
                    _Pending(
                        key=key,
                        window_end_ts=ts,
                        forecast_ts=ts + store.interval(update.slot),
                        source_timestamp_ms=record.timestamp,
                        persistence=float(window[-1, engine.target_index]),
                    )
                )
        for topic, n in per_topic.items():
            self.metrics.records.labels(topic=topic).inc(n)
        if pending:
            out.forecasts = self._forecast(engine, pending, np.stack(windows), actuals)
        out.changed = changed
        self.metrics.active_keys.set(len(store))
        self._export_scores()
        return out

    def changelog(self, changed: Mapping[str, int]) -> list[OutputRecord]:
        """The changelog records of ``changed`` keys (key -> input partition): a snapshot of
        each window still held, to the changelog partition that mirrors the key's input
        partition, built in one pass. Empty when the changelog is off."""
        if self.changelog_topic is None or self.store is None or not changed:
            return []
        held = [key for key in changed if key in self.store]
        return [
            self._changelog_record(key, changed[key], snapshot)
            for key, snapshot in zip(held, self.store.snapshots(held), strict=True)
        ]

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
                    self.scorer.score(item.key, item.forecast_ts, actual)
            records.append(
                OutputRecord(
                    topic=topic,
                    key=item.key.encode(),
                    value=encode_forecast(
                        key=item.key,
                        ts=item.forecast_ts,
                        target=target,
                        forecast=value,
                        lower=low,
                        upper=high,
                        model_version=engine.version,
                        window_end_ts=item.window_end_ts,
                    ),
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


def _getter(
    names: tuple[str, ...],
) -> Callable[[dict[str, float | None]], tuple[float | None, ...]]:
    """The values of ``names``, in that order, from a dict (a tuple even for one name)."""
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    return operator.itemgetter(*names)
