"""The seed LSTM as an ONNX graph, built from a bundle's weights, for ONNX Runtime.

ONNX Runtime runs the whole recurrence as one fused ``LSTM`` operator, without the
per-call dispatch cost of TensorFlow, and faster than XLA at large batches too
(docs/benchmarks.md). The graph is
built here from the weights (no converter, no Keras at serving time) and checked against
the Keras model to 1e-5 by the tests.

Keras and ONNX agree on the LSTM's equations; they differ only in layout:

- Keras keeps the gates in the order input, forget, cell, output (``i f c o``) and its
  kernels as ``(inputs, 4 * units)``; ONNX wants ``i o f c`` and ``(4 * units, inputs)``.
- Keras's ``LSTM(activation="relu")`` applies ReLU to the cell candidate and to the cell
  state before the output gate, with sigmoid gates: ONNX ``activations`` =
  ``[Sigmoid, Relu, Relu]``.
- ONNX has separate input and recurrent biases; Keras's single bias goes in the first,
  zeros in the second.

The graph also scales its inputs as :meth:`Scaling.scale_inputs
<stream_forecaster.model.scaling.Scaling.scale_inputs>` does (``log1p`` of the log features,
then the z-score), in float32: it takes the raw windows, so that a batch costs one call
and no NumPy temporaries (at batch 1 that was a sixth of the time).

``Dropout(0.2)`` is the identity at inference. For Monte-Carlo dropout the graph takes a
second input, a ``(batch, units)`` mask already scaled by ``1 / (1 - rate)`` (what Keras's
Dropout multiplies by in training mode), applied to the LSTM's output before ``Dense``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from stream_forecaster.model.bundle import ModelBundle

if TYPE_CHECKING:
    from onnx import NodeProto, TensorProto

OPSET: Final = 17
INPUT: Final = "windows"
MASK: Final = "dropout_mask"
OUTPUT: Final = "outputs"


def _onnx_gate_order(keras: npt.NDArray[np.float32], axis: int) -> npt.NDArray[np.float32]:
    """Keras's ``i f c o`` gate blocks in ONNX's ``i o f c`` order along ``axis``."""
    i, f, c, o = np.split(keras, 4, axis=axis)
    return np.concatenate([i, o, f, c], axis=axis)


def seed_lstm_onnx(bundle: ModelBundle, *, dropout_mask: bool = False) -> bytes:
    """The bundle's network as a serialised ONNX model.

    Input ``windows``: raw (unscaled) windows, float32, shape ``(batch, window, n_features)``.
    Output ``outputs``: the Dense layer's output, float32, shape ``(batch, 1)``.

    Args:
        bundle: the model (its architecture is the seed LSTM; the bundle checks that).
        dropout_mask: add the ``dropout_mask`` input, shape ``(batch, units)``, that the
            LSTM's output is multiplied by before ``Dense`` (Monte-Carlo dropout).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kernel, recurrent, bias, dense_kernel, dense_bias = bundle.weights
    units = recurrent.shape[0]
    window, n_features = bundle.manifest.window, bundle.manifest.n_inputs
    weights = {
        "W": _onnx_gate_order(kernel, axis=1).T[np.newaxis],  # (1, 4u, features)
        "R": _onnx_gate_order(recurrent, axis=1).T[np.newaxis],  # (1, 4u, u)
        "B": np.concatenate([_onnx_gate_order(bias, axis=0), np.zeros(4 * units)])[np.newaxis],
        "dense_kernel": dense_kernel,
        "dense_bias": dense_bias,
    }
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), name)
        for name, value in weights.items()
    ]
    initializers.append(numpy_helper.from_array(np.array([0], dtype=np.int64), "axis0"))
    scaling_nodes, scaling_initializers = _scaling_nodes(bundle)
    initializers += scaling_initializers
    last = "hidden_masked" if dropout_mask else "hidden"
    nodes = [
        *scaling_nodes,
        # ONNX's LSTM takes (time, batch, features).
        helper.make_node("Transpose", ["scaled"], ["time_major"], perm=[1, 0, 2]),
        helper.make_node(
            "LSTM",
            ["time_major", "W", "R", "B"],
            ["", "last_hidden"],
            hidden_size=units,
            activations=["Sigmoid", "Relu", "Relu"],
        ),
        helper.make_node("Squeeze", ["last_hidden", "axis0"], ["hidden"]),  # (batch, u)
        *([helper.make_node("Mul", ["hidden", MASK], [last])] if dropout_mask else []),
        helper.make_node("MatMul", [last, "dense_kernel"], ["dense"]),
        helper.make_node("Add", ["dense", "dense_bias"], [OUTPUT]),
    ]
    shape: list[str | int] = ["batch", window, n_features]
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)]
    if dropout_mask:
        inputs.append(helper.make_tensor_value_info(MASK, TensorProto.FLOAT, ["batch", units]))
    graph = helper.make_graph(
        nodes,
        f"seed_lstm_{bundle.version}",
        inputs,
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 1])],
        initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="stream-forecaster"
    )
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def _scaling_nodes(bundle: ModelBundle) -> tuple[list[NodeProto], list[TensorProto]]:
    """Nodes from ``windows`` to ``scaled``: log1p(max(x, 0)) of the log features, then
    (x - mean) / std; and their constants."""
    from onnx import helper, numpy_helper

    scaling = bundle.manifest.scaling
    constants: dict[str, npt.NDArray[Any]] = {
        "feature_mean": np.asarray(scaling.feature_mean, dtype=np.float32),
        "feature_std": np.asarray(scaling.feature_std, dtype=np.float32),
    }
    nodes = []
    source = INPUT
    if scaling.log_features:
        mask = np.zeros(len(scaling.feature_mean), dtype=bool)
        mask[list(scaling.log_features)] = True
        constants["log_mask"] = mask
        constants["zero"] = np.zeros(1, dtype=np.float32)
        constants["one"] = np.ones(1, dtype=np.float32)
        nodes += [
            helper.make_node("Max", [INPUT, "zero"], ["non_negative"]),
            helper.make_node("Add", ["non_negative", "one"], ["plus_one"]),
            helper.make_node("Log", ["plus_one"], ["logged"]),
            helper.make_node("Where", ["log_mask", "logged", INPUT], ["transformed"]),
        ]
        source = "transformed"
    nodes += [
        helper.make_node("Sub", [source, "feature_mean"], ["centred"]),
        helper.make_node("Div", ["centred", "feature_std"], ["scaled"]),
    ]
    initializers = [numpy_helper.from_array(value, name) for name, value in constants.items()]
    return nodes, initializers
