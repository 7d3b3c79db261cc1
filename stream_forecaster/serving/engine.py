"""The inference engine: one ONNX Runtime call per batch, never ``predict`` per record.

The bundle's weights and input scaling are turned into an ONNX graph
(:mod:`stream_forecaster.serving.onnx_graph`) and run by ONNX Runtime's fused LSTM kernel,
faster than the TensorFlow graph compiled with XLA that it replaced at every batch size
(docs/benchmarks.md); batches of any size run as they are, with no padding and nothing
compiled per shape. The graph scales the raw windows as the bundle's
:class:`~stream_forecaster.model.scaling.Scaling` does (in float32), the outputs go back
through it, and the forecasts equal the Keras model's to 1e-5 (tests/serving/test_engine.py).

Serving does not import TensorFlow: a bundle's weights are plain arrays.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.serving.onnx_graph import INPUT, MASK, OUTPUT, seed_lstm_onnx

log = logging.getLogger(__name__)

_OUTPUTS: Final = [OUTPUT]
_SMALL: Final = 32

#: Larger batches run as chunks of this size, faster per forecast than one call (the
#: LSTM's state for the chunk stays in cache).
_CHUNK: Final = 256


def _session(model: bytes, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


class InferenceEngine:
    """Forecasts for batches of raw windows with one model bundle.

    Args:
        bundle: the model to serve. Its target must be one of its features (the forecast
            starts from the target's last value).
        threads: ONNX Runtime threads per call; 0 (default) means one per core.

    Raises:
        BundleError: the bundle cannot be served.
    """

    def __init__(self, bundle: ModelBundle, *, threads: int = 0) -> None:
        manifest = bundle.manifest
        if manifest.target not in manifest.features:
            raise BundleError(
                f"model {manifest.version}: target {manifest.target!r} must be one of its "
                f"features {list(manifest.features)} to be served"
            )
        started = time.perf_counter()
        self.threads = threads
        graph = seed_lstm_onnx(bundle)
        self._session = _session(graph, threads)
        # Small batches gain nothing from a thread pool but its hand-over cost: one thread.
        self._small_session = self._session if threads == 1 else _session(graph, 1)
        self._dropout_session: Any = None  # built on first use
        self.bundle = bundle
        self.version = manifest.version
        self.features = manifest.features
        self.window = manifest.window
        self.target_index = manifest.features.index(manifest.target)
        self.calendar = manifest.calendar
        self._scaling = manifest.scaling
        log.info(
            "inference engine ready for model %s (%d features%s, window %d, ONNX Runtime) in %.3fs",
            self.version,
            len(self.features),
            f" and calendar {', '.join(self.calendar)}" if self.calendar else "",
            self.window,
            time.perf_counter() - started,
        )

    def _check(self, windows: npt.NDArray[np.float32]) -> None:
        expected = (self.window, self.bundle.manifest.n_inputs)
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise ValueError(f"expected windows of shape (batch, {expected}), got {windows.shape}")

    def forecast(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Forecasts in the target's units for raw (unscaled) windows, guarded (see
        :meth:`~stream_forecaster.model.scaling.Scaling.guarded_forecast`).

        Args:
            windows: shape ``(batch, window, n_features)``, oldest reading first.

        Returns:
            One forecast per window, shape ``(batch,)``.
        """
        return self.guarded_forecast(windows)[0]

    def guarded_forecast(
        self, windows: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float64], int]:
        """Forecasts as :meth:`forecast` gives them, and how many the guards changed."""
        self._check(windows)
        n = len(windows)
        if n == 0:
            return np.empty(0), 0
        # The graph scales the raw windows itself (float32; within 1e-6 of Scaling's
        # float64 arithmetic).
        raw = np.ascontiguousarray(windows, dtype=np.float32)
        outputs: npt.NDArray[np.float32]
        if n < _SMALL:
            outputs = self._small_session.run(_OUTPUTS, {INPUT: raw})[0][:, 0]
        elif n <= _CHUNK:
            outputs = self._session.run(_OUTPUTS, {INPUT: raw})[0][:, 0]
        else:
            outputs = np.concatenate(
                [
                    self._session.run(_OUTPUTS, {INPUT: raw[i : i + _CHUNK]})[0][:, 0]
                    for i in range(0, n, _CHUNK)
                ]
            )
        last_targets = windows[:, -1, self.target_index]
        values, clipped = self._scaling.guarded_forecast(outputs, last_targets)
        return values, int(clipped.sum())

    def dropout_samples(
        self,
        windows: npt.NDArray[np.float32],
        samples: int,
        rng: np.random.Generator | None = None,
    ) -> npt.NDArray[np.float64]:
        """Monte-Carlo dropout: ``samples`` forecasts per window with the Dropout layer
        active (as Keras does in training mode), in one call; shape ``(batch, samples)``.

        Args:
            windows: shape ``(batch, window, n_features)``, oldest reading first.
            samples: forecasts per window.
            rng: draws the dropout masks (default: a fresh, unseeded generator).
        """
        self._check(windows)
        n = len(windows)
        if n == 0:
            return np.empty((0, samples))
        if self._dropout_session is None:
            self._dropout_session = _session(
                seed_lstm_onnx(self.bundle, dropout_mask=True), self.threads
            )
        rate = self.bundle.manifest.architecture.dropout
        units = self.bundle.manifest.architecture.lstm_units
        rng = rng or np.random.default_rng()
        keep = rng.random((n * samples, units)) >= rate
        mask = (keep / (1.0 - rate)).astype(np.float32)
        tiled = np.repeat(np.asarray(windows, dtype=np.float32), samples, axis=0)
        outputs = self._dropout_session.run(None, {INPUT: tiled, MASK: mask})[0][:, 0]
        last_targets = np.repeat(windows[:, -1, self.target_index].astype(np.float64), samples)
        values = self._scaling.forecast(outputs, last_targets)
        return np.asarray(values, dtype=np.float64).reshape(n, samples)
