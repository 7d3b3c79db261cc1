"""The baselines every report shows beside the model, on the same samples.

- **persistence**: the last value;
- **seasonal naive**: the value one day before the target time, at the key's own interval
  (where the series has no reading exactly a day before, the last value);
- **ridge**: a ridge regression of the next change on the same windows (every input of
  every step, standardised), fitted on the samples before the evaluated ones, its penalty
  chosen on the newest tenth of those.

A model worth serving beats all three; one that loses to persistence should not ship.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import Series, Windows

DAY_MS: Final = 24 * 3600 * 1000
#: The ridge penalties tried (on standardised inputs), scaled by the number of samples.
_PENALTIES: Final = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
_MIN_RIDGE_SAMPLES: Final = 20
METHODS: Final = ("model", "persistence", "seasonal naive", "ridge")

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Scores:
    """MAE and RMSE of one method; NaN where it could not forecast."""

    mae: float
    rmse: float

    @classmethod
    def of(cls, forecast: FloatArray, actual: FloatArray) -> Scores:
        if len(actual) == 0 or not np.isfinite(forecast).all():
            return cls(float("nan"), float("nan"))
        error = forecast - actual
        return cls(float(np.abs(error).mean()), float(np.sqrt((error**2).mean())))


@dataclass(frozen=True)
class Comparison:
    """The model against the baselines, pooled and per series key.

    Attributes:
        samples: forecasts compared.
        pooled: scores by method (:data:`METHODS`).
        per_key: MAE by key, then by method.
        seasonal_share: share of the samples that had a value a day before.
    """

    samples: int
    pooled: dict[str, Scores]
    per_key: dict[str, dict[str, float]] = field(default_factory=dict)
    seasonal_share: float = 0.0

    def skill(self, method: str = "model", against: str = "persistence") -> float:
        """1 - MAE(method) / MAE(against): above 0 means ``method`` is better."""
        base = self.pooled[against].mae
        return 1.0 - self.pooled[method].mae / base if base else float("nan")

    def lines(self, *, keys: int = 12) -> list[str]:
        """The comparison as text: pooled scores with skill, then MAE per key (the first
        ``keys`` keys)."""
        out = [f"{'':<16}{'MAE':>10}{'RMSE':>10}{'skill':>9}"]
        for method in METHODS:
            s = self.pooled[method]
            skill = self.skill(method) if method != "persistence" else 0.0
            out.append(f"{method:<16}{s.mae:>10.4f}{s.rmse:>10.4f}{skill:>+9.4f}")
        out.append(
            "skill = 1 - MAE/MAE_persistence; seasonal naive: the value a day before "
            f"({self.seasonal_share:.0%} of samples had one, the others the last value)"
        )
        if len(self.per_key) > 1:
            out.append(f"MAE per key{'':<5}" + "".join(f"{m[:11]:>12}" for m in METHODS))
            for key in list(self.per_key)[:keys]:
                row = self.per_key[key]
                out.append(f"{key[:16]:<16}" + "".join(f"{row[m]:>12.4f}" for m in METHODS))
            if len(self.per_key) > keys:
                out.append(f"... and {len(self.per_key) - keys} more keys (all in the JSON)")
        return out

    def as_dict(self) -> dict[str, object]:
        """The figures, for JSON."""
        return {
            "samples": self.samples,
            "pooled": {m: {"mae": s.mae, "rmse": s.rmse} for m, s in self.pooled.items()},
            "skill": {m: self.skill(m) for m in METHODS if m != "persistence"},
            "seasonal_share": self.seasonal_share,
            "per_key_mae": self.per_key,
        }


def compare(
    forecast: FloatArray, evaluated: Windows, before: Windows, series: Sequence[Series]
) -> Comparison:
    """Score the model's ``forecast`` of ``evaluated`` beside the baselines.

    Args:
        forecast: the model's forecasts, one per sample of ``evaluated``.
        evaluated: the samples compared.
        before: the samples before them (the ridge is fitted on these).
        series: the table's series (the seasonal naive looks a day back in them).
    """
    seasonal, found = seasonal_naive(evaluated, series)
    ridge = Ridge.fit(before).predict(evaluated)
    forecasts = {
        "model": np.asarray(forecast, dtype=np.float64),
        "persistence": evaluated.last_targets,
        "seasonal naive": seasonal,
        "ridge": ridge,
    }
    actual = evaluated.targets
    pooled = {m: Scores.of(f, actual) for m, f in forecasts.items()}
    per_key: dict[str, dict[str, float]] = {}
    for index in np.unique(evaluated.series_index).tolist():
        mask = evaluated.series_index == index
        per_key[series[index].key or str(index)] = {
            m: Scores.of(f[mask], actual[mask]).mae for m, f in forecasts.items()
        }
    share = float(found.mean()) if len(found) else 0.0
    return Comparison(len(actual), pooled, per_key, share)


def seasonal_naive(
    windows: Windows, series: Sequence[Series], season_ms: int = DAY_MS
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """The target one season (a day) before each sample's target time, where the series
    has a reading at exactly that time; elsewhere the last value.

    Returns:
        The forecasts, and where a value a season back was found.
    """
    values = np.array(windows.last_targets, dtype=np.float64)
    found = np.zeros(len(windows), dtype=bool)
    for index in np.unique(windows.series_index).tolist():
        s, mask = series[index], windows.series_index == index
        wanted = windows.target_ts[mask] - season_ms
        at = np.minimum(np.searchsorted(s.ts, wanted), len(s.ts) - 1)
        hit = (s.ts[at] == wanted) & np.isfinite(s.target[at])
        where = np.flatnonzero(mask)
        values[where[hit]] = s.target[at[hit]]
        found[where[hit]] = True
    return values, found


@dataclass(frozen=True)
class Ridge:
    """A ridge regression of the next change of the target on a window's inputs (every
    feature at every step, standardised); ``None`` weights: too few samples, it forecasts
    NaN."""

    mean: FloatArray | None
    std: FloatArray | None
    weights: FloatArray | None
    intercept: float = 0.0

    @classmethod
    def fit(cls, train: Windows) -> Ridge:
        """Fit on ``train``, the penalty chosen on its newest tenth (then refitted on all)."""
        if len(train) < _MIN_RIDGE_SAMPLES:
            return cls(None, None, None)
        x = train.inputs.reshape(len(train), -1)
        y = train.targets - train.last_targets
        mean, std = x.mean(axis=0), x.std(axis=0)
        std = np.where(std > 1e-12, std, 1.0)
        z = (x - mean) / std
        order = np.argsort(train.target_ts, kind="stable")
        cut = int(len(order) * 0.9)
        fit_rows, check_rows = order[:cut], order[cut:]
        best, best_mae = _PENALTIES[0], float("inf")
        for penalty in _PENALTIES:
            w, b = _solve(z[fit_rows], y[fit_rows], penalty)
            mae = float(np.abs(z[check_rows] @ w + b - y[check_rows]).mean())
            if mae < best_mae:
                best, best_mae = penalty, mae
        weights, intercept = _solve(z, y, best)
        return cls(mean, std, weights, intercept)

    def predict(self, windows: Windows) -> FloatArray:
        """Forecasts: each window's last value plus the predicted change."""
        if self.weights is None or self.mean is None or self.std is None:
            return np.full(len(windows), np.nan)
        z = (windows.inputs.reshape(len(windows), -1) - self.mean) / self.std
        return np.asarray(windows.last_targets + z @ self.weights + self.intercept)


def _solve(z: FloatArray, y: FloatArray, penalty: float) -> tuple[FloatArray, float]:
    """Ridge weights and intercept (centred, the penalty scaled by the sample count)."""
    z_mean, y_mean = z.mean(axis=0), float(y.mean())
    zc = z - z_mean
    gram = zc.T @ zc + penalty * len(z) * np.eye(z.shape[1])
    weights = np.linalg.solve(gram, zc.T @ (y - y_mean))
    return weights, y_mean - float(z_mean @ weights)
