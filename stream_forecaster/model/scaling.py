"""Feature and target scaling, fitted on training data and stored in the model bundle.

Inputs are standardised per feature (z-score); heavy-tailed non-negative features (such
as PM2.5 or wind speed) can be taken as ``log1p`` first (``log_features``). The model's
single output is the scaled *change* of the target over the next step
(``target_mode="delta"``, the default) or the scaled target level (``"level"``). A change
can also be learned through ``asinh(change / s)`` (``target_transform="asinh"``, ``s`` the
median absolute change): the mean-squared-error loss then stops chasing the rare spikes,
and the forecast lands closer to the median, which is what the MAE rewards.
:meth:`Scaling.forecast` turns an output back into the target's own units, shrunk toward
persistence by ``damping``, then guarded: the change from the last value is clipped to the
range seen in training (``change_bounds``), and a target that was never negative in training
is floored at 0 (``target_floor``). Training, backtests, retraining and serving all go
through this one class, so they cannot disagree.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, model_validator

TargetMode = Literal["delta", "level"]
TargetTransform = Literal["none", "asinh"]
_LOG_SKEW = 1.0  # log1p a non-negative feature whose skewness is above this

FloatArray = npt.NDArray[np.floating]


class Scaling(BaseModel):
    """Scaling statistics of a trained model.

    Args:
        feature_mean: per-feature mean, in model feature order.
        feature_std: per-feature standard deviation (1.0 where a feature is constant).
        target_mode: what the model's output means: the next step's change or its level.
        target_mean: mean of the training targets (changes or levels, per ``target_mode``,
            after ``target_transform``).
        target_std: their standard deviation.
        log_features: indexes of the features taken as ``log1p(max(x, 0))`` before the
            z-score (their mean and std are of the logs).
        target_transform: ``"asinh"``: the model learns ``asinh(change / target_scale)``
            (``delta`` mode only).
        target_scale: ``s`` of the asinh transform.
        damping: the forecast change is multiplied by this (1: as learned).
        change_bounds: the smallest and largest change of the target over one step in the
            training data; a forecast's change from the last value is clipped to them
            (``None``: not guarded, a bundle from before guards).
        target_floor: the forecast is at least this (``0.0`` when the target was never
            negative in training; ``None``: no floor).
    """

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    target_mode: TargetMode = "delta"
    target_mean: float
    target_std: float
    log_features: tuple[int, ...] = ()
    target_transform: TargetTransform = "none"
    target_scale: float = 1.0
    damping: float = 1.0
    change_bounds: tuple[float, float] | None = None
    target_floor: float | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Scaling:
        if len(self.feature_mean) != len(self.feature_std):
            raise ValueError(
                f"expected as many feature_std as feature_mean ({len(self.feature_mean)}), "
                f"got {len(self.feature_std)}"
            )
        if any(s <= 0 for s in self.feature_std) or self.target_std <= 0:
            raise ValueError("standard deviations must be positive")
        if any(not 0 <= i < len(self.feature_mean) for i in self.log_features):
            raise ValueError(
                f"expected log_features among 0..{len(self.feature_mean) - 1}, "
                f"got {list(self.log_features)}"
            )
        if self.target_transform == "asinh" and self.target_mode != "delta":
            raise ValueError("target_transform 'asinh' needs target_mode 'delta'")
        if self.target_scale <= 0 or self.damping < 0:
            raise ValueError("target_scale must be positive and damping non-negative")
        if self.change_bounds is not None and self.change_bounds[0] > self.change_bounds[1]:
            raise ValueError(f"expected change_bounds (low, high), got {self.change_bounds}")
        return self

    @classmethod
    def fit(
        cls,
        rows: FloatArray,
        targets: FloatArray,
        last_targets: FloatArray,
        target_mode: TargetMode = "delta",
        *,
        log_skewed: bool = False,
        target_transform: TargetTransform = "none",
    ) -> Scaling:
        """Fit the statistics on training data.

        Args:
            rows: feature rows, shape ``(n, n_features)``, no NaN.
            targets: the values to forecast, shape ``(m,)``.
            last_targets: the target's value at the end of each input window, shape ``(m,)``.
            target_mode: ``"delta"`` or ``"level"``.
            log_skewed: take ``log1p`` of every non-negative feature whose skewness is
                above 1 (heavy right tail).
            target_transform: ``"asinh"`` to learn ``asinh(change / s)``, ``s`` the median
                absolute change (``delta`` mode).
        """
        rows64: npt.NDArray[np.float64] = np.asarray(rows, dtype=np.float64)
        log_features: tuple[int, ...] = ()
        if log_skewed:
            log_features = tuple(i for i in range(rows64.shape[1]) if _right_skewed(rows64[:, i]))
            rows64 = _log1p(rows64, log_features)
        outputs = targets - last_targets if target_mode == "delta" else targets
        scale = 1.0
        if target_transform == "asinh":
            scale = _safe_std(np.asarray([np.median(np.abs(outputs))]))[0]
            outputs = np.arcsinh(outputs / scale)
        return cls(
            feature_mean=tuple(float(v) for v in rows64.mean(axis=0)),
            feature_std=tuple(_safe_std(rows64.std(axis=0))),
            target_mode=target_mode,
            target_mean=float(outputs.mean()),
            target_std=_safe_std(np.asarray([outputs.std()]))[0],
            log_features=log_features,
            target_transform=target_transform,
            target_scale=scale,
        ).guarded_by(targets, last_targets)

    def guarded_by(self, targets: FloatArray, last_targets: FloatArray) -> Scaling:
        """A copy whose guards also allow what this training data did: the change bounds
        widened to its one-step changes; the floor at 0 kept only while no target, and no
        last value, in it is negative (a warm-started retrain widens, never narrows).

        Args:
            targets: the training targets.
            last_targets: each window's last target value.
        """
        targets = np.asarray(targets, dtype=np.float64)
        last_targets = np.asarray(last_targets, dtype=np.float64)
        if targets.size == 0:
            return self
        changes = targets - last_targets
        low, high = float(changes.min()), float(changes.max())
        if self.change_bounds is not None:
            low, high = min(low, self.change_bounds[0]), max(high, self.change_bounds[1])
        fresh = self.change_bounds is None and self.target_floor is None
        never_negative = min(float(targets.min()), float(last_targets.min())) >= 0
        floor = 0.0 if never_negative and (fresh or self.target_floor == 0.0) else None
        return self.model_copy(update={"change_bounds": (low, high), "target_floor": floor})

    @property
    def n_features(self) -> int:
        return len(self.feature_mean)

    @cached_property
    def _mean(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.feature_mean, dtype=np.float64)

    @cached_property
    def _std(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.feature_std, dtype=np.float64)

    def scale_inputs(self, windows: FloatArray) -> npt.NDArray[np.float32]:
        """Standardise windows of shape ``(..., window, n_features)``; returns float32."""
        if self.log_features:
            windows = _log1p(np.asarray(windows, dtype=np.float64), self.log_features)
        return ((windows - self._mean) / self._std).astype(np.float32)

    def scale_targets(self, targets: FloatArray, last_targets: FloatArray) -> FloatArray:
        """The model outputs that training should aim for."""
        outputs = targets - last_targets if self.target_mode == "delta" else targets
        if self.target_transform == "asinh":
            outputs = np.arcsinh(outputs / self.target_scale)
        return (outputs - self.target_mean) / self.target_std

    def change(self, outputs: FloatArray) -> npt.NDArray[np.float64]:
        """The change (or level) that model outputs stand for, in the target's units,
        before damping."""
        values = np.asarray(outputs, dtype=np.float64) * self.target_std
        values += self.target_mean
        if self.target_transform == "asinh":
            values = self.target_scale * np.sinh(values)
        return values

    def forecast(self, outputs: FloatArray, last_targets: FloatArray) -> FloatArray:
        """Forecasts in target units from model outputs and each window's last target value,
        guarded (see :meth:`guarded_forecast`)."""
        return self.guarded_forecast(outputs, last_targets)[0]

    def guarded_forecast(
        self, outputs: FloatArray, last_targets: FloatArray
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Forecasts in target units, and which of them the guards changed: the change
        from the last value clipped to ``change_bounds``, the value floored at
        ``target_floor``. A non-finite output stays non-finite (the caller drops it).

        Args:
            outputs: the model's outputs.
            last_targets: each window's last target value.
        """
        last = np.asarray(last_targets, dtype=np.float64)
        values = self.change(outputs)
        if self.target_mode == "delta":
            if self.damping != 1.0:
                values *= self.damping
            values += last  # float32 last values are taken as float64
        guarded = values
        if self.change_bounds is not None:
            low, high = self.change_bounds
            guarded = np.clip(values - last, low, high) + last
            guarded = np.where(np.isfinite(values), guarded, values)
        if self.target_floor is not None:
            guarded = np.where(guarded < self.target_floor, self.target_floor, guarded)
        # Clipping adds and subtracts the last value: compare with a tolerance.
        changed = ~np.isclose(guarded, values, rtol=1e-12, atol=1e-9) & np.isfinite(values)
        return np.where(changed, guarded, values), changed


def _log1p(rows: npt.NDArray[np.float64], columns: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """``rows`` with ``log1p(max(x, 0))`` in ``columns`` (the last axis); a copy."""
    out = np.array(rows, dtype=np.float64)
    cols = list(columns)
    out[..., cols] = np.log1p(np.maximum(out[..., cols], 0.0))
    return out


def _right_skewed(column: npt.NDArray[np.float64]) -> bool:
    """Non-negative with a heavy right tail (skewness above 1)."""
    if column.size < 3 or column.min() < 0:
        return False
    std = column.std()
    if std <= 1e-12:
        return False
    return float((((column - column.mean()) / std) ** 3).mean()) > _LOG_SKEW


def _safe_std(std: FloatArray) -> list[float]:
    return [float(s) if s > 1e-12 else 1.0 for s in std]
