"""The seed architecture, pinned: any drift from the founding design fails here."""

from __future__ import annotations

import pytest

from stream_forecaster.model.network import build_model, parameter_count

# The subject is the Keras network itself (TensorFlow).
pytestmark = pytest.mark.slow


def test_eight_features_give_exactly_11851_parameters() -> None:
    model = build_model(window=24, n_features=8)

    assert model.count_params() == 11_851
    assert [layer.count_params() for layer in model.layers] == [11_800, 0, 51]
    assert parameter_count(8) == 11_851


def test_layers_activations_and_dropout_are_the_founding_design() -> None:
    model = build_model(window=24, n_features=8)
    lstm, dropout, dense = model.layers

    assert [type(layer).__name__ for layer in model.layers] == ["LSTM", "Dropout", "Dense"]
    assert lstm.units == 50
    assert lstm.activation.__name__ == "relu"
    assert lstm.return_sequences is False
    assert dropout.rate == pytest.approx(0.2)
    assert dense.units == 1
    assert dense.activation.__name__ == "linear"
    assert model.input_shape == (None, 24, 8)
    assert model.output_shape == (None, 1)


def test_compiled_with_adam_mse_and_mae() -> None:
    model = build_model(window=12, n_features=3, learning_rate=0.005)

    assert type(model.optimizer).__name__ == "Adam"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.005)
    assert model.loss == "mse"
    assert model.get_compile_config()["metrics"] == ["mae"]


@pytest.mark.parametrize("n_features", [1, 3, 11])
def test_parameter_count_formula_matches_keras(n_features: int) -> None:
    assert build_model(window=5, n_features=n_features).count_params() == parameter_count(
        n_features
    )


@pytest.mark.parametrize(("window", "n_features"), [(0, 8), (24, 0)])
def test_rejects_empty_shapes(window: int, n_features: int) -> None:
    with pytest.raises(ValueError, match="expected"):
        build_model(window=window, n_features=n_features)
