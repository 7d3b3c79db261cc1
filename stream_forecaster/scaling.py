"""Feature and target scaling, fitted on training data and stored in the model bundle.

Inputs are standardised per feature (z-score). The model's single output is the scaled
*change* of the target over the next step (``target_mode="delta"``, the default) or the
scaled target level (``"level"``); :meth:`Scaling.forecast` turns it back into the target's
own units. Training and serving both go through this one class, so they cannot disagree.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, model_validator

TargetMode = Literal["delta", "level"]

FloatArray = npt.NDArray[np.floating]


class Scaling(BaseModel):
    """Scaling statistics of a trained model.

    Args:
        feature_mean: per-feature mean, in model feature order.
        feature_std: per-feature standard deviation (1.0 where a feature is constant).
        target_mode: what the model's output means: the next step's change or its level.
        target_mean: mean of the training targets (changes or levels, per ``target_mode``).
        target_std: their standard deviation.
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mode: TargetMode = "delta"
    target_mean: float
    target_std: float

    @model_validator(mode="after")
    def _consistent(self) -> Scaling:
        if len(self.feature_mean) != len(self.feature_std):
            raise ValueError(
                f"expected as many feature_std as feature_mean ({len(self.feature_mean)}), "
                f"got {len(self.feature_std)}"
            )
        if any(s <= 0 for s in self.feature_std) or self.target_std <= 0:
            raise ValueError("standard deviations must be positive")
        return self

    @classmethod
    def fit(
        cls,
        rows: FloatArray,
        targets: FloatArray,
        last_targets: FloatArray,
        target_mode: TargetMode = "delta",
    ) -> Scaling:
        """Fit the statistics on training data.

        Args:
            rows: feature rows, shape ``(n, n_features)``, no NaN.
            targets: the values to forecast, shape ``(m,)``.
            last_targets: the target's value at the end of each input window, shape ``(m,)``.
            target_mode: ``"delta"`` or ``"level"``.
        """
        outputs = targets - last_targets if target_mode == "delta" else targets
        return cls(
            feature_mean=tuple(float(v) for v in rows.mean(axis=0)),
            feature_std=tuple(_safe_std(rows.std(axis=0))),
            target_mode=target_mode,
            target_mean=float(outputs.mean()),
            target_std=_safe_std(np.asarray([outputs.std()]))[0],
        )

    @property
    def n_features(self) -> int:
        return len(self.feature_mean)

    def scale_inputs(self, windows: FloatArray) -> npt.NDArray[np.float32]:
        """Standardise windows of shape ``(..., window, n_features)``; returns float32."""
        mean = np.asarray(self.feature_mean, dtype=np.float64)
        std = np.asarray(self.feature_std, dtype=np.float64)
        return ((windows - mean) / std).astype(np.float32)

    def scale_targets(self, targets: FloatArray, last_targets: FloatArray) -> FloatArray:
        """The model outputs that training should aim for."""
        outputs = targets - last_targets if self.target_mode == "delta" else targets
        return (outputs - self.target_mean) / self.target_std

    def forecast(self, outputs: FloatArray, last_targets: FloatArray) -> FloatArray:
        """Forecasts in target units from model outputs and each window's last target value."""
        level_or_delta = np.asarray(outputs, dtype=np.float64) * self.target_std + self.target_mean
        if self.target_mode == "delta":
            return level_or_delta + last_targets
        return level_or_delta


def _safe_std(std: FloatArray) -> list[float]:
    return [float(s) if s > 1e-12 else 1.0 for s in std]
