"""Scaling: the robust transforms the retraining worker trains with, and their inverse."""

from __future__ import annotations

import numpy as np
import pytest

from stream_forecaster.model.scaling import Scaling
from stream_forecaster.serving.engine import InferenceEngine
from tests.harness.bundles import untrained_bundle


def spiky(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of (pm2.5-like, temperature-like) and the next pm2.5: a heavy right tail."""
    rng = np.random.default_rng(seed)
    level = rng.lognormal(4, 1, n)
    rows = np.column_stack([level, rng.normal(10, 8, n)])
    targets = level * rng.lognormal(0, 0.3, n)
    return rows, targets, level


def test_log_skewed_takes_only_heavy_tailed_non_negative_features() -> None:
    rows, targets, last = spiky(2000)
    scaling = Scaling.fit(rows, targets, last, log_skewed=True)
    assert scaling.log_features == (0,)  # lognormal yes; a (partly negative) normal no
    assert scaling.feature_mean[0] == pytest.approx(np.log1p(rows[:, 0]).mean())
    assert Scaling.fit(rows, targets, last).log_features == ()


def test_asinh_targets_map_back_to_the_targets_exactly() -> None:
    rows, targets, last = spiky(500, seed=1)
    scaling = Scaling.fit(rows, targets, last, log_skewed=True, target_transform="asinh")
    assert scaling.target_scale == pytest.approx(np.median(np.abs(targets - last)))
    outputs = scaling.scale_targets(targets, last)
    assert abs(outputs.mean()) < 1e-9 and outputs.std() == pytest.approx(1.0)
    np.testing.assert_allclose(scaling.forecast(outputs, last), targets, rtol=1e-9)
    damped = scaling.model_copy(update={"damping": 0.5})
    np.testing.assert_allclose(damped.forecast(outputs, last), last + 0.5 * (targets - last))


def test_invalid_transforms_are_refused() -> None:
    base = {"feature_mean": (0.0,), "feature_std": (1.0,), "target_mean": 0.0, "target_std": 1.0}
    with pytest.raises(ValueError, match=r"log_features among 0\.\.0"):
        Scaling(**base, log_features=(1,))
    with pytest.raises(ValueError, match="needs target_mode 'delta'"):
        Scaling(**base, target_mode="level", target_transform="asinh")


@pytest.mark.slow
def test_the_engine_applies_the_transforms_like_keras() -> None:
    bundle = untrained_bundle(window=5)
    scaling = bundle.manifest.scaling.model_copy(
        update={
            "log_features": (0, 2),
            "feature_mean": (3.0, 20.0, 3.5),
            "feature_std": (0.5, 3.0, 0.4),
            "target_transform": "asinh",
            "target_scale": 2.5,
            "damping": 0.7,
        }
    )
    manifest = bundle.manifest.model_copy(update={"scaling": scaling})
    bundle = type(bundle)(manifest=manifest, weights=bundle.weights)
    windows = np.random.default_rng(3).lognormal(3, 0.5, (40, 5, 3)).astype(np.float32)
    outputs = bundle.build_model().predict(scaling.scale_inputs(windows), verbose=0)[:, 0]
    expected = scaling.forecast(outputs, windows[:, -1, 0].astype(np.float64))
    np.testing.assert_allclose(
        InferenceEngine(bundle).forecast(windows), expected, rtol=1e-5, atol=1e-6
    )


# -- the guards: no impossible forecast --------------------------------------------------------


def test_guards_are_learned_from_the_training_data() -> None:
    rows, targets, last = spiky(1000, seed=2)
    scaling = Scaling.fit(rows, targets, last)
    changes = targets - last
    assert scaling.change_bounds == (changes.min(), changes.max())
    assert scaling.target_floor == 0.0  # PM2.5-like: never negative in training
    signed = Scaling.fit(rows, targets - 500.0, last - 500.0)  # a target that goes below 0
    assert signed.target_floor is None
    assert signed.change_bounds == pytest.approx((changes.min(), changes.max()))


def test_a_forecast_is_floored_at_0_and_its_change_clipped_to_the_training_range() -> None:
    rows, targets, last = spiky(1000, seed=3)
    scaling = Scaling.fit(rows, targets, last, target_transform="asinh")
    low, high = scaling.change_bounds or (0.0, 0.0)
    # Outputs far outside anything trained on (the asinh target blows up both ways).
    outputs = np.array([-40.0, -3.0, 0.0, 3.0, 40.0, np.nan])
    last_values = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 5.0])
    values, clipped = scaling.guarded_forecast(outputs, last_values)
    assert np.all(values[:5] >= 0)
    assert np.all(values[:5] - last_values[:5] <= high + 1e-9)
    assert np.all(values[:5] - last_values[:5] >= max(low, -5.0) - 1e-9)
    assert clipped[[0, 4]].all() and not clipped[2]  # the extremes changed, zero change did not
    assert np.isnan(values[5]) and not clipped[5]  # a NaN stays NaN (not published), uncounted
    np.testing.assert_array_equal(scaling.forecast(outputs, last_values), values)


def test_a_bundle_from_before_guards_forecasts_as_it_did() -> None:
    rows, targets, last = spiky(300, seed=4)
    unguarded = Scaling.fit(rows, targets, last).model_copy(
        update={"change_bounds": None, "target_floor": None}
    )
    outputs = np.array([-50.0, 0.0, 50.0])
    values, clipped = unguarded.guarded_forecast(outputs, np.full(3, 5.0))
    assert not clipped.any()
    assert values[0] < 0  # what the issue saw: impossible, but unchanged for an old bundle


def test_a_warm_start_widens_the_bounds_and_keeps_the_floor_only_while_true() -> None:
    rows, targets, last = spiky(500, seed=5)
    scaling = Scaling.fit(rows, targets, last)
    wider = scaling.guarded_by(np.array([0.0, 5000.0]), np.array([4000.0, 0.0]))
    assert wider.change_bounds == (-4000.0, 5000.0) and wider.target_floor == 0.0
    assert wider.guarded_by(np.array([-1.0]), np.array([0.0])).target_floor is None
    # Stored in the bundle, and read back the same.
    bundle = untrained_bundle(features=("a", "b"), window=3)
    guarded = bundle.manifest.model_copy(update={"scaling": wider})
    assert guarded.model_validate_json(guarded.model_dump_json()).scaling == wider


def test_the_engine_guards_a_hostile_window_and_counts_it() -> None:
    """Readings far outside anything trained on (a sensor gone wild): every forecast stays
    non-negative and within the training range of change from the last value."""
    rows, targets, last = spiky(1000, seed=6)
    scaling = Scaling.fit(np.column_stack([rows, rows[:, 1]]), targets, last)
    bundle = untrained_bundle(features=("pm", "t", "p"), window=4)
    bundle = type(bundle).from_weights(
        bundle.weights,
        features=bundle.manifest.features,
        target="pm",
        window=4,
        scaling=scaling,
        training=bundle.manifest.training,
        name="guarded",
    )
    engine = InferenceEngine(bundle, threads=1)
    rng = np.random.default_rng(0)
    windows = rng.normal(0, 1e6, size=(64, 4, 3)).astype(np.float32)
    windows[:, :, 0] = np.abs(windows[:, :, 0])  # the target itself stays plausible-ish
    windows[:8, -1, 0] = 0.0  # a last value of 0: any fall would be negative
    values, clipped = engine.guarded_forecast(windows)
    low, high = scaling.change_bounds or (0.0, 0.0)
    change = values - windows[:, -1, 0].astype(np.float64)
    assert np.all(values >= 0)
    assert np.all(change <= high + 1e-6) and np.all(change >= low - 1e-6)
    assert clipped > 0
    np.testing.assert_array_equal(engine.forecast(windows), values)
