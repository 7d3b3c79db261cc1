"""A bundle of the seed network with random weights, made with numpy alone.

For what needs a servable model but not a trained one: the benchmarks (throughput does not
depend on what the weights learned), smoke tests of a deployment, and the tests of
everything around the model. The weights are drawn as Keras initialises the layers
(Glorot-uniform kernels, an orthogonal recurrent kernel, the LSTM's forget-gate bias at 1),
so the forecasts have a realistic scale; no TensorFlow is imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stream_forecaster.model.bundle import ModelBundle, TrainingInfo
from stream_forecaster.model.calendar import CalendarInput
from stream_forecaster.model.network import LSTM_UNITS
from stream_forecaster.model.scaling import Scaling


def untrained_bundle(
    features: Sequence[str],
    window: int,
    *,
    seed: int = 7,
    scaling: Scaling | None = None,
    created_at: str = "2026-01-01T00:00:00Z",
    name: str = "untrained",
    calendar: tuple[CalendarInput, ...] = (),
) -> ModelBundle:
    """The seed LSTM for ``features`` and ``window`` with seeded random weights; its target
    is the first feature.

    Args:
        features: the feature names, in model order.
        window: readings per input window.
        seed: the same seed gives the same weights (and the same version id).
        scaling: the input and target scaling; default: every feature around 10 * (i + 1)
            with a spread of 2 + i, and changes of the target around 0.1 +- 1.5.
        created_at: the bundle's creation time (part of its version id).
        name: the model name.
        calendar: calendar inputs after the features (two inputs each, around 0 +- 0.7).
    """
    rng = np.random.default_rng(seed)
    n, units = len(features) + 2 * len(calendar), LSTM_UNITS
    weights = (
        _glorot(rng, (n, 4 * units)),
        _orthogonal(rng, units, 4 * units),
        np.concatenate(
            [np.zeros(units), np.ones(units), np.zeros(2 * units)]  # gates i f c o
        ).astype(np.float32),
        _glorot(rng, (units, 1)),
        np.zeros(1, dtype=np.float32),
    )
    scaling = scaling or Scaling(
        feature_mean=tuple(10.0 * (i + 1) for i in range(len(features)))
        + (0.0,) * (n - len(features)),
        feature_std=tuple(2.0 + i for i in range(len(features))) + (0.7,) * (n - len(features)),
        target_mean=0.1,
        target_std=1.5,
    )
    return ModelBundle.from_weights(
        weights,
        features=tuple(features),
        target=features[0],
        window=window,
        scaling=scaling,
        training=TrainingInfo(created_at=created_at, source="untrained"),
        name=name,
        calendar=calendar,
    )


def _glorot(rng: np.random.Generator, shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> npt.NDArray[np.float32]:
    """An orthogonal ``(rows, cols)`` matrix, as Keras's ``Orthogonal`` initialiser."""
    flat = rng.normal(size=(cols, rows))
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    return np.ascontiguousarray(q.T).astype(np.float32)
