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

import logging
import operator
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Final

import numpy as np

from stream_forecaster.model.calendar import window_calendar
from stream_forecaster.scoring.online import OnlineScorer
from stream_forecaster.serving.batch import BatchOutput, BatchReport, Eviction, Restored
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.forecasting import Forecaster, ReadyWindows
from stream_forecaster.settings import Settings
from stream_forecaster.state.snapshots import SnapshotError
from stream_forecaster.state.updates import GAP_ACTIONS, OUTCOMES
from stream_forecaster.state.windows import WindowStore
from stream_forecaster.wire.dead_letters import dead_letter
from stream_forecaster.wire.errors import InvalidRecord
from stream_forecaster.wire.readings import check_features, decode_reading_fields
from stream_forecaster.wire.records import InputRecord, OutputRecord
from stream_forecaster.wire.timestamps import check_not_ahead, format_timestamp

log = logging.getLogger(__name__)

_REWIND: Final = GAP_ACTIONS.index("rewind")
_NO_LIMIT: Final = float("inf")


class BatchProcessor:
    """Turns batches of input records into forecasts, keeping the windows of every key.

    Args:
        settings: the service settings (topics, windows, limits).
        clock: monotonic seconds (injectable for tests).
        wall_clock: epoch seconds, for readings stamped too far ahead (injectable for tests).
    """

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.wall_clock = wall_clock
        self.engine: InferenceEngine | None = None
        self.store: WindowStore | None = None
        self.partition_of: dict[str, int] = {}
        self.changelog_topic = settings.changelog_topic() if settings.state.changelog else None
        self.scorer = OnlineScorer.from_settings(settings.scoring)
        self.forecaster = Forecaster(settings.scoring, self.scorer, settings.topics.output)

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
            rewind_after=w.rewind_after,
        )
        self.partition_of.clear()

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
        max_future = self.settings.windows.max_future_ms
        latest_ts = _NO_LIMIT if max_future is None else self.wall_clock() * 1000 + max_future
        out = BatchOutput()
        keys: list[str] = []
        stamps: list[int] = []
        rows: list[tuple[float | None, ...]] = []
        accepted: list[InputRecord] = []
        report = out.report
        for record in records:
            out.offsets[(record.topic, record.partition)] = record.offset + 1
            try:
                key, ts, values = decode_reading_fields(
                    record.key, record.value, max_bytes=max_bytes
                )
                if values.keys() != feature_set:  # else the checks pass: skip the f-string
                    check_features(values, features, where=f"{key}@offset {record.offset}")
                if ts > latest_ts:
                    check_not_ahead(ts, latest_ts, max_future, f"{key}@offset {record.offset}")
            except InvalidRecord as error:
                report.invalid[error.reason] += 1
                out.dead_letters.append(dead_letter(record, error, topics.dead_letter))
                continue
            keys.append(key)
            stamps.append(ts)
            rows.append(in_model_order(values))  # in model order
            accepted.append(record)
        report.records.update(record.topic for record in records)
        if keys:
            out.forecasts, out.changed = self._window_and_forecast(
                engine,
                store,
                report,
                keys=keys,
                stamps=stamps,
                ordered_rows=rows,
                accepted=accepted,
            )
        report.active_keys = len(store)
        return out

    def _window_and_forecast(
        self,
        engine: InferenceEngine,
        store: WindowStore,
        report: BatchReport,
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
        report.ignored.update(dict(zip(OUTCOMES[1:], outcomes[1:], strict=True)))
        gaps = np.bincount(update.gap, minlength=len(GAP_ACTIONS)).tolist()
        report.gaps.update(dict(zip(GAP_ACTIONS[1:], gaps[1:], strict=True)))
        changed: dict[str, int] = {}
        partition_of = self.partition_of
        for i in np.flatnonzero(update.outcome == 0).tolist():
            key = keys[i]
            changed[key] = partition_of[key] = accepted[i].partition
        if gaps[_REWIND]:
            for i in np.flatnonzero(update.gap == _REWIND).tolist():
                log.warning(
                    "key %s went back in time: %d late readings in a row, the last at %s; its "
                    "window restarts from there (SF_WINDOWS__REWIND_AFTER)",
                    keys[i],
                    store.rewind_after,
                    format_timestamp(stamps[i]),
                )
        if not len(update.forecastable):
            return [], changed
        end_ts = ts[update.forecastable]
        which = update.forecastable.tolist()
        ready = ReadyWindows(
            keys=[keys[i] for i in which],
            window_end_ts=end_ts.tolist(),
            forecast_ts=(end_ts + update.intervals).tolist(),
            source_timestamp_ms=[accepted[i].timestamp for i in which],
            persistence=update.windows[:, -1, engine.target_index].astype(np.float64),
            # The model's inputs: the readings, then its calendar inputs at each step.
            windows=window_calendar(update.windows, end_ts, update.intervals, engine.calendar),
        )
        return self.forecaster.forecast(engine, ready, actuals, report), changed

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
        return len(gone)

    def load_windows(self, partition: int, snapshots: dict[str, bytes]) -> Restored:
        """Load restored snapshots of keys from input ``partition``; returns how many were
        loaded and skipped.

        A snapshot that does not fit the current model's window shape is skipped (logged):
        the key warms up afresh.
        """
        if self.store is None:
            raise RuntimeError("no model loaded: call use_engine() first")
        now = self.clock()
        loaded = 0
        for key, data in snapshots.items():
            try:
                self.store.load_snapshot(key, data, now)
            except SnapshotError as exc:
                log.warning("window of %s not restored: %s", key, exc)
                continue
            self.partition_of[key] = partition
            loaded += 1
        return Restored(loaded, len(snapshots) - loaded)

    @property
    def active_keys(self) -> int:
        """Keys with a window."""
        return 0 if self.store is None else len(self.store)

    def evict_idle(self) -> Eviction:
        """Evict keys idle longer than the TTL; returns how many and their changelog
        tombstones."""
        if self.store is None:
            return Eviction(0, [])
        evicted = self.store.evict_idle(self.clock(), self.settings.windows.key_ttl_s)
        partitions = [self.partition_of.pop(key, None) for key in evicted]
        for key in evicted:
            self.scorer.forget(key)
        if evicted:
            log.info(
                "evicted %d keys idle for more than %.0fs",
                len(evicted),
                self.settings.windows.key_ttl_s,
            )
        if self.changelog_topic is None:
            return Eviction(len(evicted), [])
        tombstones = [
            self._changelog_record(key, partition, None)
            for key, partition in zip(evicted, partitions, strict=True)
            if partition is not None
        ]
        return Eviction(len(evicted), tombstones)


def _getter(
    names: tuple[str, ...],
) -> Callable[[dict[str, float | None]], tuple[float | None, ...]]:
    """The values of ``names``, in that order, from a dict (a tuple even for one name)."""
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    return operator.itemgetter(*names)
