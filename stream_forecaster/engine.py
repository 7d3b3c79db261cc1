"""The inference engine: one compiled, batched call per poll, never ``predict`` per record.

The bundle's Keras model is wrapped in a ``tf.function`` with a fixed input signature
``(None, window, n_features)`` float32 and compiled with XLA (measured 2-3x faster than
the plain graph on CPU at batches of 8 to 1024; see docs/benchmarks.md). Batches are
padded to the next power of two (bucketed shapes), so XLA compiles a handful of shapes,
all at load time, and never on the hot path. Scaling in and out goes through the bundle's
:class:`~stream_forecaster.scaling.Scaling`, exactly as in training.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from stream_forecaster.bundle import BundleError, ModelBundle
from stream_forecaster.model import import_keras

log = logging.getLogger(__name__)

_MIN_BUCKET: Final = 8


def bucket_size(n: int) -> int:
    """The padded batch size for ``n`` windows: the next power of two, at least 8."""
    return max(_MIN_BUCKET, 1 << max(0, n - 1).bit_length())


class InferenceEngine:
    """Forecasts for batches of raw windows with one model bundle.

    Args:
        bundle: the model to serve. Its target must be one of its features (the forecast
            starts from the target's last value).
        max_batch: the largest batch that will be asked for; every bucket up to its own is
            compiled at load time.
        jit_compile: compile with XLA (default); off gives the plain TensorFlow graph.
    """

    def __init__(
        self, bundle: ModelBundle, max_batch: int = 1024, *, jit_compile: bool = True
    ) -> None:
        manifest = bundle.manifest
        if manifest.target not in manifest.features:
            raise BundleError(
                f"model {manifest.version}: target {manifest.target!r} must be one of its "
                f"features {list(manifest.features)} to be served"
            )
        import_keras()
        import tensorflow as tf

        self._use(bundle)
        self.model = bundle.build_model()
        model = self.model
        spec = tf.TensorSpec((None, self.window, len(self.features)), tf.float32)

        def infer(x: Any) -> Any:
            return model(x, training=False)

        def infer_with_dropout(x: Any) -> Any:
            return model(x, training=True)

        self._infer = tf.function(
            infer, input_signature=[spec], reduce_retracing=True, jit_compile=jit_compile
        )
        # Monte-Carlo dropout samples (prediction intervals); compiled on first use.
        self._infer_dropout = tf.function(
            infer_with_dropout, input_signature=[spec], reduce_retracing=True
        )
        started = time.perf_counter()
        size = bucket_size(1)
        while size <= bucket_size(max_batch):
            self._infer(np.zeros((size, self.window, len(self.features)), dtype=np.float32))
            size *= 2
        log.info(
            "inference engine ready for model %s (%d features, window %d, XLA %s) in %.2fs",
            self.version,
            len(self.features),
            self.window,
            "on" if jit_compile else "off",
            time.perf_counter() - started,
        )

    def _use(self, bundle: ModelBundle) -> None:
        manifest = bundle.manifest
        self.bundle = bundle
        self.version = manifest.version
        self.features = manifest.features
        self.window = manifest.window
        self.target_index = manifest.features.index(manifest.target)
        self._scaling = manifest.scaling

    def fits(self, bundle: ModelBundle) -> bool:
        """``bundle`` has this engine's input shape: :meth:`reload` can take it."""
        m = bundle.manifest
        return (
            m.window == self.window
            and len(m.features) == len(self.features)
            and m.target in m.features
            and m.architecture == self.bundle.manifest.architecture
        )

    def reload(self, bundle: ModelBundle) -> None:
        """Serve ``bundle`` with this engine's compiled function: its weights are assigned
        to the model's variables, nothing is traced or compiled again (a hot swap costs
        milliseconds). Only while this engine is not in use by another thread.

        Raises:
            ValueError: the bundle has another input shape or architecture.
        """
        if not self.fits(bundle):
            raise ValueError(
                f"model {bundle.version} does not fit engine of {self.version}: expected "
                f"window {self.window} and {len(self.features)} features"
            )
        self.model.set_weights(list(bundle.weights))
        self._use(bundle)
        log.info("inference engine reloaded with model %s (no recompilation)", self.version)

    def forecast(self, windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Forecasts in the target's units for raw (unscaled) windows.

        Args:
            windows: shape ``(batch, window, n_features)``, oldest reading first.

        Returns:
            One forecast per window, shape ``(batch,)``.
        """
        n = len(windows)
        expected = (self.window, len(self.features))
        if windows.ndim != 3 or windows.shape[1:] != expected:
            raise ValueError(f"expected windows of shape (batch, {expected}), got {windows.shape}")
        if n == 0:
            return np.empty(0)
        padded = np.zeros((bucket_size(n), *expected), dtype=np.float32)
        # Scaled exactly as in training (float64 arithmetic, then float32), so that serving
        # and the offline model see bit-identical inputs.
        padded[:n] = self._scaling.scale_inputs(windows)
        outputs = np.asarray(self._infer(padded))[:n, 0]
        last_targets = windows[:, -1, self.target_index].astype(np.float64)
        return np.asarray(self._scaling.forecast(outputs, last_targets), dtype=np.float64)

    def dropout_samples(
        self, windows: npt.NDArray[np.float32], samples: int
    ) -> npt.NDArray[np.float64]:
        """Monte-Carlo dropout: ``samples`` forecasts per window with the Dropout(0.2)
        layer active, in one call; shape ``(batch, samples)``.

        Args:
            windows: shape ``(batch, window, n_features)``, oldest reading first.
            samples: forecasts per window.
        """
        n = len(windows)
        if n == 0:
            return np.empty((0, samples))
        scaled = self._scaling.scale_inputs(windows).astype(np.float32)
        tiled = np.repeat(scaled, samples, axis=0)
        outputs = np.asarray(self._infer_dropout(tiled))[:, 0].reshape(n, samples)
        last_targets = np.repeat(windows[:, -1, self.target_index].astype(np.float64), samples)
        values = self._scaling.forecast(outputs.reshape(-1), last_targets)
        return np.asarray(values, dtype=np.float64).reshape(n, samples)
