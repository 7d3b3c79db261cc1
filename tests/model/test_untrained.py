"""Bundles with random weights, without TensorFlow: the seed network's shape, exactly."""

from __future__ import annotations

import numpy as np

from stream_forecaster.model.network import parameter_count
from stream_forecaster.model.untrained import untrained_bundle

FEATURES = ("pm2.5", "DEWP", "TEMP", "PRES", "cbwd", "Iws", "Is", "Ir")


def test_eight_features_give_the_seed_networks_11851_parameters() -> None:
    bundle = untrained_bundle(FEATURES, 24)
    assert sum(w.size for w in bundle.weights) == parameter_count(8) == 11_851


def test_the_same_seed_gives_the_same_bundle_and_another_seed_another() -> None:
    a, b, c = (untrained_bundle(FEATURES, 24, seed=s) for s in (1, 1, 2))
    assert a.version == b.version != c.version
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x, y)


def test_the_recurrent_kernel_is_orthogonal_and_the_forget_gate_starts_open() -> None:
    _, recurrent, bias, _, _ = untrained_bundle(FEATURES, 24).weights
    units = recurrent.shape[0]
    rows = recurrent.astype(np.float64)
    np.testing.assert_allclose(rows @ rows.T, np.eye(units), atol=1e-5)  # as Keras's Orthogonal
    np.testing.assert_array_equal(bias[units : 2 * units], 1.0)  # gates i f c o: f at 1
    assert not bias[:units].any() and not bias[2 * units :].any()
