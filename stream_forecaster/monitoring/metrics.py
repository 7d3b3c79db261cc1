"""Every metric ``serve`` exports, on an injectable registry.

Names carry their unit and counters end in ``_total``, as Prometheus recommends. Each test
builds its own :class:`~prometheus_client.CollectorRegistry` and reads values back with
``registry.get_sample_value(...)``.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric

from stream_forecaster.monitoring.histograms import (
    BATCH_BUCKETS,
    INFERENCE_BUCKETS,
    LATENCY_BUCKETS,
    BulkHistogram,
)
from stream_forecaster.scoring.online import UNSCORED_REASONS
from stream_forecaster.wire.errors import INVALID_REASONS

#: Why serve refuses a model bundle (see the signing and release rules in the docs).
BUNDLE_REJECT_REASONS = (
    "unsigned",
    "forged",
    "other_model",
    "older_version",
    "damaged",
    "incompatible",
    "oversized",
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
            "Breaks in a key's readings, by action taken: reset or fill (a gap longer than "
            "max_gap intervals), rewind (its readings went back in time; the window restarted).",
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
        self.forecasts_clipped = Counter(
            "sf_forecasts_clipped",
            "Forecasts the guards changed: floored at 0 (a target never negative in "
            "training) or their change from the last value clipped to the training range.",
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
        self.interval_keys = Gauge(
            "sf_interval_keys",
            "Keys with at least 50 intervals, by their recent coverage against "
            "SF_SCORING__COVERAGE: below or above it by more than 5 points, or within "
            "(per_key intervals only; refreshed every 15 s).",
            ["coverage"],
            registry=r,
        )
        self.interval_half_width = Gauge(
            "sf_interval_half_width",
            "Half width of the conformal prediction interval, in the target's units.",
            registry=r,
        )
        self.model_bundles_rejected = Counter(
            "sf_model_bundles_rejected",
            "Model bundles refused, by reason: unsigned, forged, other_model, older_version, "
            "damaged, incompatible, oversized.",
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
        for action in ("reset", "fill", "rewind"):
            self.window_gaps.labels(action=action)
        for reason in ("checkpoint", "changelog"):
            self.kafka_recoveries.labels(reason=reason)
        for operation in ("probe", "recovery"):
            self.kafka_errors.labels(operation=operation)
        for reason in UNSCORED_REASONS:
            self.forecasts_unscored.labels(reason=reason)
        for reason in BUNDLE_REJECT_REASONS:
            self.model_bundles_rejected.labels(reason=reason)


def exported_families(metrics_class: Callable[[CollectorRegistry], object]) -> list[Metric]:
    """Every metric family a metrics class exports, in the order it defines them, each
    labelled metric with one child so that its label names show in its samples (what the
    reference page and the dashboard's tests read)."""
    registry = CollectorRegistry()
    metrics = metrics_class(registry)
    for metric in vars(metrics).values():
        label_names = getattr(metric, "_labelnames", ())
        if label_names:
            metric.labels(*["x"] * len(label_names))
    return list(registry.collect())
