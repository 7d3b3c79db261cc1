"""Every metric ``retrain`` exports, on an injectable registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
