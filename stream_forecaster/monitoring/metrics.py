"""Prometheus metrics of the forecaster, on an injectable registry.

Names carry their unit and counters end in ``_total``, as Prometheus recommends. Each test
builds its own :class:`~prometheus_client.CollectorRegistry` and reads values back with
``registry.get_sample_value(...)``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from stream_forecaster.scoring.online import UNSCORED_REASONS
from stream_forecaster.wire.readings import INVALID_REASONS

#: Latency buckets in seconds: 1 ms .. 60 s.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Inference buckets in seconds: 50 µs .. 5 s.
INFERENCE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


#: Observations :meth:`BulkHistogram.observe` holds before counting them (between scrapes).
_FOLD_AT = 10_000


class BulkHistogram:
    """A histogram for the hot path, exported exactly as a prometheus_client ``Histogram``
    with the same buckets would be: values are counted a batch at a time (one numpy pass)
    instead of one locked ``observe`` each.

    Args:
        name: the metric name (samples ``_bucket``, ``_count``, ``_sum``).
        documentation: its help text.
        buckets: upper bounds, ascending (``+Inf`` is added).
        registry: where to register it.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above all
        self._sum = 0.0
        self._lock = threading.Lock()
        self._held: deque[float] = deque()  # appended from any thread, folded in here
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count one value (cheap: from a client callback thread, for instance)."""
        self._held.append(value)
        if len(self._held) >= _FOLD_AT:
            self._fold()

    def observe_many(self, values: npt.ArrayLike) -> None:
        """Count a batch of values."""
        array = np.asarray(values, dtype=np.float64).ravel()
        if not array.size:
            return
        slots = np.searchsorted(self._bounds, array, side="left")  # value <= bound
        counts = np.bincount(slots, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(array.sum())

    def _fold(self) -> None:
        """Count the held values. Two threads may fold at once (a callback reaching
        ``_FOLD_AT`` while a scrape collects): each value is popped by exactly one."""
        held, values = self._held, []
        try:
            for _ in range(len(held)):
                values.append(held.popleft())
        except IndexError:  # the other fold took the rest
            pass
        self.observe_many(values)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        self._fold()
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        bounds = [floatToGoString(b) for b in self._bounds.tolist()]  # type: ignore[no-untyped-call]
        bounds.append("+Inf")
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=total,
        )


class ServiceMetrics:
    """Every metric ``serve`` exports.

    Args:
        registry: where to register them (a fresh one per test; the default one in serve).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.records = Counter("sf_records", "Input records consumed.", ["topic"], registry=r)
        self.records_invalid = Counter(
            "sf_records_invalid",
            "Input records rejected and sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=r,
        )
        self.readings_ignored = Counter(
            "sf_readings_ignored",
            "Valid readings not added to a window, by time rule (duplicate, out_of_order, late).",
            ["rule"],
            registry=r,
        )
        self.window_gaps = Counter(
            "sf_window_gaps",
            "Gaps longer than max_gap intervals, by action taken (reset, fill).",
            ["action"],
            registry=r,
        )
        self.forecasts = Counter(
            "sf_forecasts", "Forecasts published to the output topic.", registry=r
        )
        self.forecasts_non_finite = Counter(
            "sf_forecasts_non_finite",
            "Forecasts not published because the model returned NaN or infinity.",
            registry=r,
        )
        self.dead_letters_failed = Counter(
            "sf_dead_letter_failures",
            "Dead letters that could not be published.",
            registry=r,
        )
        self.active_keys = Gauge(
            "sf_active_keys", "Series keys with a window in memory.", registry=r
        )
        self.keys_evicted = Counter(
            "sf_keys_evicted",
            "Series keys evicted after being idle longer than the TTL.",
            registry=r,
        )
        self.batch_size = Histogram(
            "sf_batch_size_windows",
            "Windows per batched inference call.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "sf_inference_seconds",
            "Duration of one batched inference call.",
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "sf_batch_processing_seconds",
            "Duration of one poll's processing: decode, windows, inference, publish, commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_seconds = BulkHistogram(
            "sf_end_to_end_latency_seconds",
            "From the input record's Kafka timestamp to its forecast acknowledged by Kafka.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.input_wait_seconds = BulkHistogram(
            "sf_input_wait_seconds",
            "From the input record's Kafka timestamp to the poll that returned it: the part "
            "of the end-to-end latency before serve had the record.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "sf_consumer_lag_records",
            "Records between the consumer's position and the partition's end.",
            ["topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "sf_assigned_partitions", "Input partitions assigned to this instance.", registry=r
        )
        self.model_info = Gauge(
            "sf_model_info",
            "The model being served (value 1), by name and version.",
            ["name", "version"],
            registry=r,
        )
        self.model_loaded = Gauge(
            "sf_model_loaded",
            "1 when a model is loaded and forecasts are made, else 0.",
            registry=r,
        )
        self.model_load_failures = Counter(
            "sf_model_load_failures",
            "Model bundles that could not be loaded (damaged, incompatible).",
            registry=r,
        )
        self.commits = Counter(
            "sf_commits", "Offset commits (or committed transactions).", registry=r
        )
        self.commit_failures = Counter(
            "sf_commit_failures",
            "Offset commits or transactions that failed (their records are redelivered).",
            registry=r,
        )
        self.state_restore_seconds = Histogram(
            "sf_state_restore_seconds",
            "Time to restore the windows of newly assigned partitions from the changelog.",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.state_restored_windows = Counter(
            "sf_state_restored_windows",
            "Windows restored from the changelog (on assignment or after a failure).",
            registry=r,
        )
        self.state_snapshots_skipped = Counter(
            "sf_state_snapshots_skipped",
            "Changelog snapshots not restored (damaged, or another window shape).",
            registry=r,
        )
        self.state_snapshots_written = Counter(
            "sf_state_snapshots_written",
            "Window snapshots and tombstones written to the changelog.",
            registry=r,
        )
        self.kafka_connected = Gauge(
            "sf_kafka_connected",
            "1 while the brokers answer (checked every second by a background probe), "
            "0 during an outage.",
            registry=r,
        )
        self.kafka_recoveries = Counter(
            "sf_kafka_recoveries",
            "Recoveries from a failed publish or transaction (windows reloaded, offsets "
            "rewound), by what failed.",
            ["reason"],
            registry=r,
        )
        self.kafka_errors = Counter(
            "sf_kafka_errors",
            "Kafka operations that failed, by operation: probe (the per-second check of "
            "the brokers), recovery (an attempt to recover, retried after a back-off).",
            ["operation"],
            registry=r,
        )
        # Online accuracy: each forecast is scored when the reading for its time arrives.
        window = "over the last SF_SCORING__WINDOW scored forecasts of each model version"
        self.online_mae = Gauge(
            "sf_online_mae", f"Live MAE of the forecasts, {window}.", ["model_version"], registry=r
        )
        self.online_rmse = Gauge(
            "sf_online_rmse",
            f"Live RMSE of the forecasts, {window}.",
            ["model_version"],
            registry=r,
        )
        self.online_persistence_mae = Gauge(
            "sf_online_persistence_mae",
            f"MAE of persistence (the last value) on the same points, {window}.",
            ["model_version"],
            registry=r,
        )
        self.online_skill = Gauge(
            "sf_online_skill",
            "1 - MAE / persistence MAE on the same points (above 0: better than persistence).",
            ["model_version"],
            registry=r,
        )
        self.online_scored = Gauge(
            "sf_online_scored_forecasts",
            "Scored forecasts in the sliding window behind the online figures.",
            ["model_version"],
            registry=r,
        )
        self.interval_coverage = Gauge(
            "sf_interval_coverage_ratio",
            "Share of scored forecasts whose actual value fell inside the prediction interval.",
            ["model_version"],
            registry=r,
        )
        self.online_by_version = (
            self.online_mae,
            self.online_rmse,
            self.online_persistence_mae,
            self.online_skill,
            self.online_scored,
            self.interval_coverage,
        )
        self.scored_versions: set[str] = set()
        self.forecasts_unscored = Counter(
            "sf_forecasts_unscored",
            "Forecasts never scored, by reason: no_actual (no reading at their time), "
            "superseded, overflow, forgotten (key evicted or partition revoked).",
            ["reason"],
            registry=r,
        )
        self.forecasts_pending = Gauge(
            "sf_forecasts_pending", "Forecasts waiting for their actual value.", registry=r
        )
        self.interval_half_width = Gauge(
            "sf_interval_half_width",
            "Half width of the conformal prediction interval, in the target's units.",
            registry=r,
        )
        self.model_bundles_rejected = Counter(
            "sf_model_bundles_rejected",
            "Model bundles refused, by reason: unsigned, forged, damaged, incompatible.",
            ["reason"],
            registry=r,
        )
        self.last_poll_timestamp = Gauge(
            "sf_last_poll_timestamp_seconds",
            "Unix time of the last poll of the input topic.",
            registry=r,
        )

        # Every known label value starts at 0, so that the first event of a kind is a visible
        # increase to rate() (a series born at 1 shows no increase).
        for reason in INVALID_REASONS:
            self.records_invalid.labels(reason=reason)
        for rule in ("duplicate", "out_of_order", "late"):
            self.readings_ignored.labels(rule=rule)
        for action in ("reset", "fill"):
            self.window_gaps.labels(action=action)
        for reason in ("checkpoint", "changelog"):
            self.kafka_recoveries.labels(reason=reason)
        for operation in ("probe", "recovery"):
            self.kafka_errors.labels(operation=operation)
        for reason in UNSCORED_REASONS:
            self.forecasts_unscored.labels(reason=reason)
        for reason in ("unsigned", "forged", "damaged", "incompatible"):
            self.model_bundles_rejected.labels(reason=reason)

    def set_model(self, name: str, version: str) -> None:
        """Record the model now served (only one model_info series is 1)."""
        self.model_info.clear()
        self.model_info.labels(name=name, version=version).set(1)
        self.model_loaded.set(1)


class RetrainMetrics:
    """Every metric of ``stream-forecaster retrain``.

    Args:
        registry: where the metrics are registered (each test passes its own).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.readings = Counter(
            "sf_retrain_readings", "Input readings added to the retraining history.", registry=r
        )
        self.history_keys = Gauge(
            "sf_retrain_history_keys", "Keys in the retraining history.", registry=r
        )
        self.runs = Counter(
            "sf_retrain_runs",
            "Retraining runs by outcome: promoted, rejected (by the gate), failed.",
            ["outcome"],
            registry=r,
        )
        self.triggers = Counter(
            "sf_retrain_triggers",
            "Why a retraining started: first (enough history for a first model), schedule, "
            "drift (live MAE above the validation MAE times the drift factor).",
            ["reason"],
            registry=r,
        )
        self.duration_seconds = Histogram(
            "sf_retrain_duration_seconds",
            "Wall time of a retraining run (training and the gate).",
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.samples = Gauge(
            "sf_retrain_samples",
            "Windows in the last run, by part: train, validation, holdout.",
            ["part"],
            registry=r,
        )
        self.holdout_mae = Gauge(
            "sf_retrain_holdout_mae",
            "MAE on the last run's held-out data, by model: candidate, current, persistence.",
            ["model"],
            registry=r,
        )
        self.live_mae = Gauge(
            "sf_retrain_live_mae",
            "The current model's MAE on the readings since it was trained (what serve's "
            "forecasts scored); compared with its validation MAE for drift.",
            registry=r,
        )
        self.last_run_timestamp = Gauge(
            "sf_retrain_last_run_timestamp_seconds",
            "Unix time the last retraining run ended.",
            registry=r,
        )
        for outcome in ("promoted", "rejected", "failed"):
            self.runs.labels(outcome=outcome)
        for reason in ("first", "schedule", "drift"):
            self.triggers.labels(reason=reason)
