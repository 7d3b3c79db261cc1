"""The promotion gate: what it lets through, on rules and on real trained models."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.model.registry import Registry
from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics
from stream_forecaster.retraining.gate import gate
from stream_forecaster.retraining.worker import RetrainWorker
from stream_forecaster.settings import Settings
from stream_forecaster.training.fit import Errors, TrainOptions, fit, split_by_time
from tests.retraining.test_beijing_replay import FEATURES, beijing_readings

WINDOW = 12


def errors(mae: float, persistence: float) -> Errors:
    return Errors(mae=mae, rmse=mae * 1.3, persistence_mae=persistence, persistence_rmse=0.0)


def test_a_first_model_must_beat_persistence_a_later_one_the_current_model() -> None:
    assert gate(errors(9.0, 10.0), None).promote
    first = gate(errors(10.5, 10.0), None)
    assert not first.promote
    assert "does not beat persistence 10.0000" in first.reason
    assert gate(errors(8.0, 7.0), errors(8.5, 7.0)).promote  # better than current suffices
    later = gate(errors(8.5, 9.0), errors(8.4, 9.0))
    assert not later.promote
    assert "does not beat the current model's 8.4000" in later.reason


@pytest.mark.slow
def test_a_candidate_trained_on_shuffled_targets_is_rejected(
    tmp_path: Path, beijing_csv: Path
) -> None:
    settings = Settings(
        model={"path": tmp_path, "features": list(FEATURES), "target": "pm2.5", "window": WINDOW},
        metrics={"port": 0},
    )
    registry = CollectorRegistry()
    worker = RetrainWorker(settings, RetrainMetrics(registry), threading.Event())
    for ts, values in beijing_readings(beijing_csv, 2000):
        worker.history.add("beijing", ts, values)
    split = split_by_time(worker.windows(), 0.15, 0.2)
    options = TrainOptions(window=WINDOW, epochs=6, patience=3, damping=True)
    trained = fit(split, features=FEATURES, target="pm2.5", options=options, source="test")
    Registry(tmp_path).add(trained, status="promoted")
    worker.current = trained

    shuffled_targets = np.random.default_rng(0).permutation(split.train.targets)
    shuffled = replace(split, train=replace(split.train, targets=shuffled_targets))
    candidate = fit(shuffled, features=FEATURES, target="pm2.5", options=options, source="shuffled")
    verdict = worker.consider(candidate, split)

    assert not verdict.promote
    assert verdict.current is not None and verdict.candidate.mae > verdict.current.mae
    entry = Registry(tmp_path).entry(candidate.version)
    assert entry.status == "rejected" and entry.reason == verdict.reason
    assert Registry(tmp_path).current() is not None
    assert Registry(tmp_path).current().version == trained.version  # type: ignore[union-attr]
    assert registry.get_sample_value("sf_retrain_runs_total", {"outcome": "rejected"}) == 1
    assert registry.get_sample_value(
        "sf_retrain_holdout_mae", {"model": "candidate"}
    ) == pytest.approx(verdict.candidate.mae)
