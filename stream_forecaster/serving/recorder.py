"""The one writer of serve's metrics: what happened, in, Prometheus samples, out.

The serving code never touches a metric: the pipeline returns a
:class:`~stream_forecaster.serving.batch.BatchReport` per batch, and the loop, the delivery
guarantees, the model hand-off and the broker probe tell :class:`ServeRecorder` what they
did, by name. Everything that counts, times or gauges serve is here, so that a reader sees
in one screenful when each metric moves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from stream_forecaster.monitoring.metrics import ServiceMetrics
from stream_forecaster.scoring.online import OnlineScorer
from stream_forecaster.serving.batch import BatchReport, Restored

#: How often the keys' interval coverage is sorted into bands (a pass over every key).
_BANDS_EVERY_S = 15.0


class ServeRecorder:
    """Records what serve did as samples of :class:`ServiceMetrics`.

    Args:
        registry: where the metrics are registered (a fresh one per test; the default one
            in serve).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.metrics = ServiceMetrics(registry)
        self.registry = registry
        self._scored_versions: set[str] = set()
        self._unscored_seen: dict[str, int] = {}
        self._next_bands = 0.0

    # -- the loop --------------------------------------------------------------------------

    def polled(self, record_timestamps_ms: npt.NDArray[np.float64]) -> None:
        """A poll returned (records with these Kafka timestamps): the time of the last
        poll, and how long the records were in Kafka and the client before serve had them
        (their timestamps are the producers'; a clock ahead of ours counts as 0)."""
        now = time.time()
        self.metrics.last_poll_timestamp.set(now)
        if len(record_timestamps_ms):
            waits = now - record_timestamps_ms / 1000
            self.metrics.input_wait_seconds.observe_many(np.maximum(waits, 0.0))

    def batch(self, report: BatchReport, scorer: OnlineScorer, seconds: float) -> None:
        """One batch processed and handed to the delivery guarantee, in ``seconds``."""
        m = self.metrics
        for topic, n in report.records.items():
            m.records.labels(topic=topic).inc(n)
        for reason, n in report.invalid.items():
            m.records_invalid.labels(reason=reason).inc(n)
        for rule, n in report.ignored.items():
            if n:
                m.readings_ignored.labels(rule=rule).inc(n)
        for action, n in report.gaps.items():
            if n:
                m.window_gaps.labels(action=action).inc(n)
        if report.windows:
            m.inference_seconds.observe(report.inference_seconds)
            m.batch_size.observe(report.windows)
        if report.non_finite:
            m.forecasts_non_finite.inc(report.non_finite)
        if report.clipped:
            m.forecasts_clipped.inc(report.clipped)
        m.active_keys.set(report.active_keys)
        m.batch_seconds.observe(seconds)
        self.scores(scorer)

    def scores(self, scorer: OnlineScorer) -> None:
        """Online accuracy per model version, unscored counts, calibration."""
        m = self.metrics
        kept = set(scorer.versions())
        for version in self._scored_versions - kept:
            for gauge in m.online_by_version:
                with contextlib.suppress(KeyError):
                    gauge.remove(version)
        self._scored_versions = kept
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
        self._calibration(scorer)

    def _calibration(self, scorer: OnlineScorer) -> None:
        """The interval half-width; every 15 s, the keys by their interval coverage."""
        m = self.metrics
        half_width = scorer.half_width()
        if half_width is not None:
            m.interval_half_width.set(half_width)
        now = time.monotonic()
        if now >= self._next_bands:  # a pass over every key: not at every batch
            self._next_bands = now + _BANDS_EVERY_S
            bands = scorer.coverage_bands()
            for band, keys in (bands or {}).items():
                m.interval_keys.labels(coverage=band).set(keys)

    def keys(self, active: int, evicted: int = 0) -> None:
        """Keys with a window now; ``evicted`` of them just went for being idle."""
        if evicted:
            self.metrics.keys_evicted.inc(evicted)
        self.metrics.active_keys.set(active)

    def lag(self, topic: str, partition: int, records: int) -> None:
        self.metrics.consumer_lag.labels(topic, str(partition)).set(records)

    # -- publishing and committing ---------------------------------------------------------

    def forecast_acked(self, source_timestamp_ms: int) -> None:
        """A forecast was acknowledged by Kafka (on the producer's IO thread)."""
        self.metrics.forecasts.inc()
        latency = time.time() - source_timestamp_ms / 1000
        self.metrics.end_to_end_seconds.observe(max(latency, 0.0))

    def dead_letter_failed(self) -> None:
        self.metrics.dead_letters_failed.inc()

    def snapshots_written(self, n: int) -> None:
        """Window snapshots and tombstones written to the changelog (a checkpoint's, or a
        transaction's)."""
        self.metrics.state_snapshots_written.inc(n)

    def committed(self) -> None:
        """Offsets committed, or a transaction."""
        self.metrics.commits.inc()

    def commit_failed(self) -> None:
        """A commit or a transaction failed: its records are redelivered."""
        self.metrics.commit_failures.inc()

    # -- state, recovery, the cluster ------------------------------------------------------

    def partitions(self, assigned: int, revoked: Collection[tuple[str, int]] = ()) -> None:
        """Input partitions assigned now; the lag series of the ``revoked`` ones go."""
        for topic, partition in revoked:
            with contextlib.suppress(KeyError):  # no lag measured for it yet
                self.metrics.consumer_lag.remove(topic, str(partition))
        self.metrics.assigned_partitions.set(assigned)

    def restored(self, seconds: float, restored: Restored, active_keys: int) -> None:
        """The windows of newly assigned partitions were restored from the changelog."""
        self.metrics.state_restore_seconds.observe(seconds)
        self.metrics.state_restored_windows.inc(restored.windows)
        if restored.skipped:
            self.metrics.state_snapshots_skipped.inc(restored.skipped)
        self.metrics.active_keys.set(active_keys)

    def recovery(self, reason: str) -> None:
        """A recovery began, after a failed ``checkpoint`` or ``changelog``."""
        self.metrics.kafka_recoveries.labels(reason=reason).inc()

    def kafka_error(self, operation: str) -> None:
        """A Kafka operation failed: ``probe`` or ``recovery`` (an attempt)."""
        self.metrics.kafka_errors.labels(operation=operation).inc()

    def brokers(self, answering: bool) -> None:
        """The broker probe's verdict (a failed check is also a ``probe`` error)."""
        if not answering:
            self.kafka_error("probe")
        self.metrics.kafka_connected.set(1 if answering else 0)

    # -- models ----------------------------------------------------------------------------

    def waiting_for_model(self) -> None:
        self.metrics.model_loaded.set(0)

    def model_served(self, name: str, version: str) -> None:
        """The model now served (only one ``sf_model_info`` series is 1)."""
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(name=name, version=version).set(1)
        self.metrics.model_loaded.set(1)

    def bundle_rejected(self, reason: str) -> None:
        """A bundle was refused (one of ``BUNDLE_REJECT_REASONS``), from the model folder or
        the model topic alike."""
        self.metrics.model_load_failures.inc()
        self.metrics.model_bundles_rejected.labels(reason=reason).inc()
