"""The seed forecasting model: the founding design's LSTM, exactly.

``Sequential([LSTM(50, activation="relu"), Dropout(0.2), Dense(1)])`` on input
``(window, n_features)``, compiled with Adam, MSE loss and the MAE metric. With 8 features
it has 11,800 + 0 + 51 = 11,851 parameters.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import keras

LSTM_UNITS: Final = 50
DROPOUT_RATE: Final = 0.2


def import_keras() -> Any:
    """Import Keras (on TensorFlow) with TensorFlow's C++ start-up chatter silenced.

    TensorFlow is imported lazily so that commands which do not need it (``config``,
    ``--help``) start in milliseconds.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    return keras


def parameter_count(n_features: int, units: int = LSTM_UNITS) -> int:
    """Parameters of the seed model: LSTM 4*u*(f+u+1), Dropout 0, Dense u+1."""
    return 4 * units * (n_features + units + 1) + units + 1


def build_model(
    window: int,
    n_features: int,
    *,
    learning_rate: float = 1e-3,
    compile_model: bool = True,
) -> keras.Sequential:
    """Build (and compile) the seed LSTM.

    Args:
        window: readings per input window (time steps).
        n_features: features per reading.
        learning_rate: Adam's learning rate.
        compile_model: compile with Adam, MSE loss and the MAE metric (off for pure inference).

    Returns:
        The Keras model, its weights freshly initialised.

    Raises:
        ValueError: ``window`` or ``n_features`` is below 1.
    """
    if window < 1:
        raise ValueError(f"expected window >= 1, got {window}")
    if n_features < 1:
        raise ValueError(f"expected n_features >= 1, got {n_features}")
    keras = import_keras()
    model = keras.Sequential(
        [
            keras.Input(shape=(window, n_features), name="window"),
            keras.layers.LSTM(LSTM_UNITS, activation="relu", name="lstm"),
            keras.layers.Dropout(DROPOUT_RATE, name="dropout"),
            keras.layers.Dense(1, name="forecast"),
        ],
        name="seed_lstm",
    )
    if compile_model:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss="mse",
            metrics=["mae"],
        )
    return model
