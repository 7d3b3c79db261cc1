"""Calendar inputs: their values, and training and serving computing the same ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stream_forecaster.data.series import Series, make_windows
from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.calendar import (
    CALENDAR_INPUTS,
    calendar_columns,
    column_names,
    window_calendar,
    with_calendar,
)
from stream_forecaster.model.network import parameter_count
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.settings import Settings
from stream_forecaster.wire.readings import encode_reading
from stream_forecaster.wire.records import Record
from tests.harness.bundles import untrained_bundle

HOUR = 3_600_000
BOTH = CALENDAR_INPUTS  # ("hour_of_day", "day_of_week")


def test_the_columns_are_the_sine_and_cosine_of_the_phase() -> None:
    assert column_names(BOTH) == [
        "hour_of_day_sin",
        "hour_of_day_cos",
        "day_of_week_sin",
        "day_of_week_cos",
    ]
    midnight, six, noon = 0, 6 * HOUR, 12 * HOUR  # 1970-01-01, a Thursday
    columns = calendar_columns(np.array([midnight, six, noon, 24 * HOUR]), ("hour_of_day",))
    np.testing.assert_allclose(columns, [[0, 1], [1, 0], [0, -1], [0, 1]], atol=1e-12)
    week = calendar_columns(np.array([0, 7 * 24 * HOUR]), ("day_of_week",))
    np.testing.assert_allclose(week[0], week[1], atol=1e-12)  # a week later: the same day
    assert calendar_columns(np.array([[1, 2]]), BOTH).shape == (1, 2, 4)


def test_serving_computes_the_calendar_inputs_training_did() -> None:
    """A window's calendar columns from its end time and interval (serving) equal those of
    its readings' own times (training)."""
    ts = 1_735_000_000_000 + np.arange(60, dtype=np.int64) * HOUR
    values = np.linspace(1, 2, 60)
    series = Series("a", ts, values.reshape(-1, 1), values, np.ones(60, dtype=bool))
    trained = make_windows([with_calendar(series, BOTH)], 5)
    plain = make_windows([series], 5)
    end_ts = trained.target_ts - HOUR
    served = window_calendar(
        plain.inputs.astype(np.float32), end_ts, np.full(len(end_ts), HOUR), BOTH
    )
    np.testing.assert_allclose(served, trained.inputs, atol=1e-6)


def test_a_bundle_with_calendar_inputs_has_their_weights_and_round_trips() -> None:
    bundle = untrained_bundle(features=("t", "rh", "p"), window=4, calendar=BOTH)
    assert bundle.manifest.n_inputs == 7
    assert bundle.weights[0].shape == (7, 200)
    assert sum(w.size for w in bundle.weights) == parameter_count(7)
    again = ModelBundle.from_bytes(bundle.to_bytes())
    assert again.manifest.calendar == BOTH
    # The seed design: 8 inputs, 11,851 parameters (e.g. 4 features + both calendar inputs).
    assert parameter_count(4 + 4) == 11_851


def test_serve_forecasts_with_the_calendar_inputs_of_each_step() -> None:
    bundle = untrained_bundle(features=("t", "rh", "p"), window=3, calendar=BOTH)
    engine = InferenceEngine(bundle, threads=1)
    processor = BatchProcessor(Settings(windows={"interval_ms": HOUR}))
    processor.use_engine(engine)
    start = 1_735_000_000_000
    records = []
    for i in range(4):
        k, v = encode_reading("a", start + i * HOUR, {"t": 10.0 + i, "rh": 20.0, "p": 30.0})
        records.append(Record("in", 0, i, start + i * HOUR, k, v))
    out = processor.process(records)
    assert len(out.forecasts) == 2
    last = json.loads(out.forecasts[-1].value or b"")
    ts = start + np.arange(1, 4, dtype=np.int64) * HOUR
    readings = np.array([[10.0 + i, 20.0, 30.0] for i in range(1, 4)])
    window = np.concatenate([readings, calendar_columns(ts, BOTH)], axis=1).astype(np.float32)
    assert last["forecast"] == pytest.approx(float(engine.forecast(window[None])[0]), rel=1e-6)
    with pytest.raises(ValueError, match=r"expected windows of shape \(batch, \(3, 7\)\)"):
        engine.forecast(readings[None].astype(np.float32))  # without them: refused
