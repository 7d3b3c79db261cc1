"""train and retrain build the same inputs from the same readings, calendar inputs included,
so the same weights forecast the same values whichever of them made the bundle."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.data.series import Series, make_windows
from stream_forecaster.model.calendar import CALENDAR_INPUTS, with_calendar
from stream_forecaster.model.registry import Registry
from stream_forecaster.monitoring.retrain_metrics import RetrainMetrics
from stream_forecaster.retraining.worker import RetrainWorker
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.settings import Settings
from stream_forecaster.training.fit import predict
from tests.harness.bundles import untrained_bundle

pytestmark = pytest.mark.slow  # the worker imports TensorFlow

HOUR = 3_600_000
BOTH = CALENDAR_INPUTS  # ("hour_of_day", "day_of_week")


def test_train_and_retrain_build_the_same_inputs_and_forecasts(tmp_path: Path) -> None:
    bundle = untrained_bundle(features=("t", "rh", "p"), window=6, calendar=BOTH)
    Registry(tmp_path).add(bundle, status="promoted")
    worker = RetrainWorker(
        Settings(model={"path": tmp_path}, metrics={"port": 0}),
        RetrainMetrics(CollectorRegistry()),
        threading.Event(),
    )
    assert worker.calendar == BOTH  # a retrain keeps its model's calendar inputs
    rng = np.random.default_rng(3)
    ts = 1_735_000_000_000 + np.arange(200, dtype=np.int64) * HOUR
    values = rng.normal(10, 2, size=(200, 3))
    for stamp, row in zip(ts.tolist(), values, strict=True):
        worker.history.add("a", stamp, {"t": row[0], "rh": row[1], "p": row[2]})

    retrained_inputs = worker.windows()
    series = Series("a", ts, values, values[:, 0], np.ones(200, dtype=bool))
    trained_inputs = make_windows([with_calendar(series, BOTH)], 6)  # as train makes them

    np.testing.assert_allclose(retrained_inputs.inputs, trained_inputs.inputs, rtol=1e-6)
    keras_forecasts = predict(bundle.build_model(), bundle.manifest.scaling, trained_inputs)
    served = InferenceEngine(bundle, threads=1).forecast(trained_inputs.inputs.astype(np.float32))
    np.testing.assert_allclose(served, keras_forecasts, rtol=1e-4, atol=1e-4)
