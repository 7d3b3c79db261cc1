"""Split conformal prediction intervals: the half-width that covers the configured share of
the most recent absolute errors (of all model versions together, so that a model swap keeps
the calibration).

With ``n`` errors and coverage ``c``, the half-width ``q`` is the ``ceil((n + 1) * c)``-th
smallest error (at most the ``n``-th), and the interval ``(forecast - q, forecast + q)``;
none until ``min_errors`` errors. ``q`` is computed once per new batch of errors, not per
forecast.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence

import numpy as np


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
