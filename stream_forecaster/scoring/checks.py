"""Checks of what the scorer is given: finite forecasts, and consistent interval bounds;
each error names the value and its index."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; received {value!r}")


def check_all_finite(
    name: str, values: npt.NDArray[np.float64], skip: npt.NDArray[np.bool_] | None = None
) -> None:
    """Raise naming the first non-finite value (not counting those marked in ``skip``)."""
    bad_values = ~np.isfinite(values) if skip is None else ~np.isfinite(values) & ~skip
    if (bad := np.flatnonzero(bad_values)).size:
        i = int(bad[0])
        raise ValueError(
            f"{name} must be a finite number; received {float(values[i])!r} at index {i}"
        )


def checked_bounds(
    lower: npt.ArrayLike | None, upper: npt.ArrayLike | None, n: int
) -> tuple[list[float | None], list[float | None]] | None:
    """The checked interval bounds of :meth:`OnlineScorer.expect_many`, as lists (None
    where both bounds are NaN), or None without intervals."""
    if (lower is None) != (upper is None):
        raise ValueError("lower and upper must both be given or both be None")
    if lower is None or upper is None:
        return None
    low = np.asarray(lower, dtype=np.float64)
    high = np.asarray(upper, dtype=np.float64)
    if low.shape != (n,) or high.shape != (n,):
        raise ValueError(f"expected {n} lower and upper bounds; received {low.shape}, {high.shape}")
    none = np.isnan(low) & np.isnan(high)
    check_all_finite("lower", low, skip=none)
    check_all_finite("upper", high, skip=none)
    if (bad := np.flatnonzero(low > high)).size:
        i = int(bad[0])
        raise ValueError(
            f"expected lower <= upper; received {float(low[i])!r} > {float(high[i])!r} at index {i}"
        )
    lows: list[float | None] = low.tolist()
    highs: list[float | None] = high.tolist()
    for i in np.flatnonzero(none).tolist():
        lows[i] = highs[i] = None
    return lows, highs
