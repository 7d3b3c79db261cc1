"""The inference engine (ONNX Runtime): the same numbers as the Keras model, one call for a
whole batch."""

from __future__ import annotations

import numpy as np
import pytest

from stream_forecaster.model.bundle import BundleError
from stream_forecaster.serving.engine import InferenceEngine
from tests.harness.bundles import untrained_bundle


def keras_forecast(bundle, windows: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What the Keras model gives offline for the same raw windows."""
    scaling = bundle.manifest.scaling
    outputs = bundle.build_model().predict(scaling.scale_inputs(windows), verbose=0)[:, 0]
    return np.asarray(scaling.forecast(outputs, windows[:, -1, 0].astype(np.float64)))


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 3, 100, 257])
def test_engine_equals_keras_model(batch: int) -> None:
    bundle = untrained_bundle(window=6)
    engine = InferenceEngine(bundle)
    rng = np.random.default_rng(batch)
    windows = (rng.normal(size=(batch, 6, 3)) * [2, 3, 4] + [10, 20, 30]).astype(np.float32)

    got = engine.forecast(windows)
    expected = keras_forecast(bundle, windows)

    assert got.shape == (batch,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_batch_results_do_not_depend_on_batch_neighbours() -> None:
    engine = InferenceEngine(untrained_bundle(window=4))
    windows = np.random.default_rng(1).normal(10, 2, size=(5, 4, 3)).astype(np.float32)
    together = engine.forecast(windows)
    alone = np.concatenate([engine.forecast(windows[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, alone, rtol=1e-6)


@pytest.mark.slow
def test_trained_weights_with_eight_features_equal_keras() -> None:
    """The gate reordering matters only once the four gates' weights differ: random
    weights far from an initialisation, 8 features, the default window."""
    bundle = untrained_bundle(window=24, features=tuple(f"f{i}" for i in range(8)), seed=5)
    rng = np.random.default_rng(7)
    weights = tuple((w + rng.normal(0, 0.05, w.shape)).astype(np.float32) for w in bundle.weights)
    bundle = type(bundle)(manifest=bundle.manifest, weights=weights)
    scaling = bundle.manifest.scaling
    windows = rng.normal(scaling.feature_mean, scaling.feature_std, (64, 24, 8)).astype(np.float32)
    np.testing.assert_allclose(
        InferenceEngine(bundle).forecast(windows),
        keras_forecast(bundle, windows),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.slow
def test_dropout_samples_apply_keras_dropout_to_the_lstm_output() -> None:
    """Each sample is Dense(LSTM(x) * mask / 0.8) for a Bernoulli(0.8) mask, which is what
    Keras computes with Dropout(0.2) in training mode."""
    bundle = untrained_bundle(window=4, seed=3)
    windows = np.random.default_rng(4).normal(10, 2, (3, 4, 3)).astype(np.float32)
    got = InferenceEngine(bundle).dropout_samples(windows, 5, rng=np.random.default_rng(9))

    mask = (np.random.default_rng(9).random((15, 50)) >= 0.2) / 0.8
    model = bundle.build_model()
    scaling = bundle.manifest.scaling
    hidden = np.repeat(model.layers[0](scaling.scale_inputs(windows)).numpy(), 5, axis=0)
    kernel, bias = model.layers[2].get_weights()
    outputs = (hidden * mask).astype(np.float32) @ kernel[:, 0] + bias[0]
    last = np.repeat(windows[:, -1, 0].astype(np.float64), 5)
    expected = np.asarray(scaling.forecast(outputs, last)).reshape(3, 5)

    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert got.std(axis=1).min() > 0  # the samples differ: dropout is active


def test_wrong_window_shape_is_refused() -> None:
    engine = InferenceEngine(untrained_bundle(window=4))
    with pytest.raises(ValueError, match=r"expected windows of shape \(batch, \(4, 3\)\), got"):
        engine.forecast(np.zeros((2, 5, 3), dtype=np.float32))


def test_target_must_be_a_feature_to_serve() -> None:
    bundle = untrained_bundle()
    manifest = bundle.manifest.model_copy(update={"target": "elsewhere"})
    with pytest.raises(BundleError, match="target 'elsewhere' must be one of its features"):
        InferenceEngine(type(bundle)(manifest=manifest, weights=bundle.weights))
