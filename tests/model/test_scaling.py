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
