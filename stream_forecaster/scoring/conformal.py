"""Split conformal prediction intervals: the half-width that covers the configured share of
the most recent absolute errors (of all model versions together, so that a model swap keeps
the calibration).

With ``n`` errors and coverage ``c``, the half-width ``q`` is the ``ceil((n + 1) * c)``-th
smallest error (at most the ``n``-th), and the interval ``(forecast - q, forecast + q)``;
none until ``min_errors`` errors. ``q`` is computed once per new batch of errors, not per
forecast.

Per key (:class:`ConformalIntervals` with ``per_key``): the errors are divided by their
key's recent error scale before they enter the calibration, and a forecast's interval is
``forecast +- q * scale(key)`` (:mod:`~stream_forecaster.scoring.key_scales`).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from stream_forecaster.scoring.key_scales import KeyScales


class ConformalCalibration:
    """The last ``window`` absolute errors, and the half-width they give.

    Args:
        window: errors kept.
        coverage: the intervals' target coverage, in (0, 1).
        min_errors: errors needed before a half-width is given.
    """

    def __init__(self, window: int, coverage: float, min_errors: int) -> None:
        self.window = window
        self.coverage = coverage
        self.min_errors = min_errors
        self._errors = array("d", bytes(8 * window))
        self._head = 0
        self.n_errors = 0
        self._half_width: float | None = None
        self._valid = False

    def add_many(self, abs_errors: Sequence[float]) -> None:
        """Add errors, oldest first: the oldest kept go."""
        k = len(abs_errors)
        kept = min(k, self.window)
        slots = (self._head + np.arange(k - kept, k)) % self.window
        np.frombuffer(self._errors)[slots] = abs_errors[k - kept :]
        self._head = (self._head + k) % self.window
        self.n_errors = min(self.n_errors + k, self.window)
        self._valid = False

    def half_width(self) -> float | None:
        """The conformal half-width ``q``, or None while fewer than ``min_errors`` errors."""
        if not self._valid:
            n = self.n_errors
            if n < self.min_errors:
                self._half_width = None
            else:
                # The slack keeps e.g. (24 + 1) * 0.28 = 7.000000000000001 from ranking 8th.
                rank = min(max(math.ceil((n + 1) * self.coverage - 1e-9), 1), n)
                errors = np.partition(np.frombuffer(self._errors)[:n], rank - 1)
                self._half_width = float(errors[rank - 1])
            self._valid = True
        return self._half_width


class ConformalIntervals:
    """Intervals from scored errors: one width for every key, or per key.

    Args:
        window: errors kept.
        coverage: the intervals' target coverage, in (0, 1).
        min_errors: errors needed before intervals are given.
        per_key: the width follows each key's recent error scale.
        max_keys: keys whose scale is kept (with ``per_key``).
    """

    def __init__(
        self,
        window: int,
        coverage: float,
        min_errors: int,
        *,
        per_key: bool = False,
        max_keys: int = 1_000_000,
    ) -> None:
        self.coverage = coverage
        self.calibration = ConformalCalibration(window, coverage, min_errors)
        self.key_scales = KeyScales(max_keys) if per_key else None

    @property
    def n_errors(self) -> int:
        return self.calibration.n_errors

    def add(self, keys: Sequence[str], abs_errors: Sequence[float], covered: Sequence[int]) -> None:
        """Scored points, in order: each key's error, and whether its interval covered the
        actual (1, 0, or -1 without one)."""
        if self.key_scales is None:
            self.calibration.add_many(abs_errors)
        else:
            self.calibration.add_many(self.key_scales.normalise(keys, abs_errors, covered))

    def half_width(self) -> float | None:
        """The half-width ``q``, or None while fewer than ``min_errors`` errors; per key,
        that of a key at the pooled error scale."""
        q = self.calibration.half_width()
        if q is None or self.key_scales is None:
            return q
        pooled = self.key_scales.pooled
        return None if pooled is None else q * pooled

    def intervals(
        self, forecasts: npt.ArrayLike, keys: Sequence[str] | None = None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        """The intervals of a batch of forecasts as float64 ``(lower, upper)`` arrays, or None
        while fewer than ``min_errors`` errors; per key, each scaled by its key's error
        scale (NaN bounds: no interval yet)."""
        q = self.calibration.half_width()
        if q is None:
            return None
        values = np.asarray(forecasts, dtype=np.float64)
        if self.key_scales is None:
            width = np.full(len(values), q)
        elif keys is None:
            width = np.full(len(values), q * (self.key_scales.pooled or np.nan))
        else:
            width = q * self.key_scales.scales(keys)
        return values - width, values + width

    def coverage_bands(self) -> dict[str, int] | None:
        """Per key: how many keys cover below, within (+-5 points) and above the target
        recently; else None."""
        return None if self.key_scales is None else self.key_scales.coverage_bands(self.coverage)
