"""The inference engine: same numbers as the Keras model, one call for a whole batch."""

from __future__ import annotations

import numpy as np
import pytest

from stream_forecaster.bundle import BundleError
from stream_forecaster.engine import InferenceEngine, bucket_size
from tests.bundles import untrained_bundle


def keras_forecast(bundle, windows: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """What the Keras model gives offline for the same raw windows."""
    scaling = bundle.manifest.scaling
    outputs = bundle.build_model().predict(scaling.scale_inputs(windows), verbose=0)[:, 0]
    return np.asarray(scaling.forecast(outputs, windows[:, -1, 0].astype(np.float64)))


@pytest.mark.parametrize("jit_compile", [True, False])
@pytest.mark.parametrize("batch", [1, 3, 100, 257])
def test_engine_equals_keras_model(batch: int, jit_compile: bool) -> None:
    bundle = untrained_bundle(window=6)
    engine = InferenceEngine(bundle, max_batch=8, jit_compile=jit_compile)
    rng = np.random.default_rng(batch)
    windows = (rng.normal(size=(batch, 6, 3)) * [2, 3, 4] + [10, 20, 30]).astype(np.float32)

    got = engine.forecast(windows)
    expected = keras_forecast(bundle, windows)

    assert got.shape == (batch,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_batch_results_do_not_depend_on_batch_neighbours() -> None:
    engine = InferenceEngine(untrained_bundle(window=4), max_batch=8)
    windows = np.random.default_rng(1).normal(10, 2, size=(5, 4, 3)).astype(np.float32)
    together = engine.forecast(windows)
    alone = np.concatenate([engine.forecast(windows[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, alone, rtol=1e-6)


def test_one_compiled_call_per_batch_no_retracing() -> None:
    engine = InferenceEngine(untrained_bundle(window=4), max_batch=64)
    rng = np.random.default_rng(2)
    for n in (1, 5, 17, 33, 64, 3, 60):
        engine.forecast(rng.normal(size=(n, 4, 3)).astype(np.float32))
    # one trace for the fixed (None, window, features) signature
    assert engine._infer.experimental_get_tracing_count() == 1


def test_wrong_window_shape_is_refused() -> None:
    engine = InferenceEngine(untrained_bundle(window=4), max_batch=8)
    with pytest.raises(ValueError, match=r"expected windows of shape \(batch, \(4, 3\)\), got"):
        engine.forecast(np.zeros((2, 5, 3), dtype=np.float32))


def test_target_must_be_a_feature_to_serve() -> None:
    bundle = untrained_bundle()
    manifest = bundle.manifest.model_copy(update={"target": "elsewhere"})
    with pytest.raises(BundleError, match="target 'elsewhere' must be one of its features"):
        InferenceEngine(type(bundle)(manifest=manifest, weights=bundle.weights))


@pytest.mark.parametrize(("n", "bucket"), [(0, 8), (1, 8), (8, 8), (9, 16), (1000, 1024)])
def test_bucket_sizes(n: int, bucket: int) -> None:
    assert bucket_size(n) == bucket


def test_a_reloaded_engine_forecasts_like_a_fresh_one_for_the_new_model() -> None:
    first, second = untrained_bundle(seed=1), untrained_bundle(seed=2)
    engine = InferenceEngine(first, max_batch=16)
    windows = np.random.default_rng(3).normal(15, 3, (5, 4, 3)).astype(np.float32)
    before = engine.forecast(windows)
    engine.reload(second)
    assert engine.version == second.version
    np.testing.assert_allclose(
        engine.forecast(windows), InferenceEngine(second, max_batch=16).forecast(windows), rtol=1e-6
    )
    assert not np.allclose(engine.forecast(windows), before)
    with pytest.raises(ValueError, match="does not fit engine"):
        engine.reload(untrained_bundle(window=6))
