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

from stream_forecaster.monitoring.metrics import ServiceMetrics
from stream_forecaster.scoring.online import OnlineScorer
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.settings.config import Settings
from stream_forecaster.state.windows import GAP_ACTIONS, OUTCOMES, SnapshotError, WindowStore
from stream_forecaster.wire.dead_letters import dead_letter
from stream_forecaster.wire.readings import (
    InvalidRecord,
    check_features,
    decode_reading_fields,
    encode_forecast,
)
from stream_forecaster.wire.records import InputRecord, OutputRecord

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
    """The forecasts a batch is about to make, one entry per forecast (the persistence
    forecasts, checked and indexed as an array, stay one)."""

    keys: list[str]
    window_end_ts: list[int]
    forecast_ts: list[int]
    source_timestamp_ms: list[int]
    persistence: npt.NDArray[np.float64]


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
        feature_set = set(features)
        topics = self.settings.topics
        max_bytes = self.settings.processing.max_record_bytes
        out = BatchOutput()
        keys: list[str] = []
        stamps: list[int] = []
        rows: list[tuple[float | None, ...]] = []
        accepted: list[InputRecord] = []
        per_topic: dict[str, int] = {}
        for record in records:
            out.offsets[(record.topic, record.partition)] = record.offset + 1
            per_topic[record.topic] = per_topic.get(record.topic, 0) + 1
            try:
                key, ts, values = decode_reading_fields(
                    record.key, record.value, max_bytes=max_bytes
                )
                if values.keys() != feature_set:  # else the checks pass: skip the f-string
                    check_features(values, features, where=f"{key}@offset {record.offset}")
            except InvalidRecord as error:
                self.metrics.records_invalid.labels(reason=error.reason).inc()
                out.dead_letters.append(dead_letter(record, error, topics.dead_letter))
                continue
            keys.append(key)
            stamps.append(ts)
            rows.append(in_model_order(values))  # in model order
            accepted.append(record)
        for topic, n in per_topic.items():
            self.metrics.records.labels(topic=topic).inc(n)
        if keys:
            out.forecasts, out.changed = self._window_and_forecast(
                engine, store, keys=keys, stamps=stamps, ordered_rows=rows, accepted=accepted
            )
        self.metrics.active_keys.set(len(store))
        self._export_scores()
        return out

    def _window_and_forecast(
        self,
        engine: InferenceEngine,
        store: WindowStore,
        *,
        keys: list[str],
        stamps: list[int],
        ordered_rows: list[tuple[float | None, ...]],
        accepted: list[InputRecord],
    ) -> tuple[list[OutputRecord], dict[str, int]]:
        """Score the readings' targets, update the windows, forecast from the full ones;
        returns the forecasts and the keys whose windows changed (with their partitions)."""
        rows = np.array(ordered_rows, dtype=np.float32)  # None (not measured) -> NaN
        ts = np.array(stamps, dtype=np.int64)
        # Each reading is the actual value of the forecast held for its (key, ts), if any.
        targets = rows[:, engine.target_index].tolist()
        self.scorer.score_many(keys, stamps, targets)
        actuals = dict(zip(zip(keys, stamps, strict=True), targets, strict=True))
        update = store.update_batch(keys, ts, rows, self.clock())
        outcomes = np.bincount(update.outcome, minlength=len(OUTCOMES)).tolist()
        for outcome, count in zip(OUTCOMES[1:], outcomes[1:], strict=True):
            if count:
                self.metrics.readings_ignored.labels(rule=outcome).inc(count)
        gaps = np.bincount(update.gap, minlength=len(GAP_ACTIONS)).tolist()
        for action, count in zip(GAP_ACTIONS[1:], gaps[1:], strict=True):
            if count:
                self.metrics.window_gaps.labels(action=action).inc(count)
        changed: dict[str, int] = {}
        partition_of = self.partition_of
        for i in np.flatnonzero(update.outcome == 0).tolist():
            key = keys[i]
            changed[key] = partition_of[key] = accepted[i].partition
        if not len(update.forecastable):
            return [], changed
        end_ts = ts[update.forecastable]
        which = update.forecastable.tolist()
        pending = _Pending(
            keys=[keys[i] for i in which],
            window_end_ts=end_ts.tolist(),
            forecast_ts=(end_ts + update.intervals).tolist(),
            source_timestamp_ms=[accepted[i].timestamp for i in which],
            persistence=update.windows[:, -1, engine.target_index].astype(np.float64),
        )
        return self._forecast(engine, pending, update.windows, actuals), changed

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
        pending: _Pending,
        windows: npt.NDArray[np.float32],
        actuals: dict[tuple[str, int], float],
    ) -> list[OutputRecord]:
        started = time.perf_counter()
        values = engine.forecast(windows)
        self.metrics.inference_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(pending.keys))
        lower, upper = self._intervals(engine, windows, values)
        if lower is not None and upper is not None:  # no interval where a bound is not finite
            bounded = np.isfinite(lower) & np.isfinite(upper)
            lower, upper = np.where(bounded, lower, np.nan), np.where(bounded, upper, np.nan)
        finite = np.isfinite(values)
        for i in np.flatnonzero(~finite).tolist():
            self.metrics.forecasts_non_finite.inc()
            log.warning(
                "model %s gave a non-finite forecast for %s@%d; not published",
                engine.version,
                pending.keys[i],
                pending.window_end_ts[i],
            )
        # Held for scoring; those whose actual came later in this batch (catching up) are
        # scored at once.
        scored = np.flatnonzero(finite & np.isfinite(pending.persistence))
        which = scored.tolist()
        self.scorer.expect_many(
            [pending.keys[i] for i in which],
            [pending.forecast_ts[i] for i in which],
            values[scored],
            pending.persistence[scored],
            engine.version,
            lower=None if lower is None else lower[scored],
            upper=None if upper is None else upper[scored],
            actuals=actuals,
        )
        target = engine.bundle.manifest.target
        topic = self.settings.topics.output
        lows, highs = _optional(lower, len(values)), _optional(upper, len(values))
        return [
            OutputRecord(
                topic=topic,
                key=pending.keys[i].encode(),
                value=encode_forecast(
                    key=pending.keys[i],
                    ts=pending.forecast_ts[i],
                    target=target,
                    forecast=value,
                    lower=low,
                    upper=high,
                    model_version=engine.version,
                    window_end_ts=pending.window_end_ts[i],
                ),
                source_timestamp_ms=pending.source_timestamp_ms[i],
            )
            for i, (value, low, high, ok) in enumerate(
                zip(values.tolist(), lows, highs, finite.tolist(), strict=True)
            )
            if ok
        ]

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


def _optional(values: npt.NDArray[np.float64] | None, n: int) -> list[float | None]:
    """``values`` as a list with None for NaN; ``n`` Nones when there are none."""
    if values is None:
        return [None] * n
    return [None if math.isnan(v) else v for v in values.tolist()]
