"""Each key's recent error scale, so that a conformal interval's width follows its key.

Normalised split conformal: a scored error enters the calibration divided by its key's
scale *before* that error (an exponentially weighted mean of the key's absolute errors);
the interval of a forecast is ``forecast +- q * scale(key)``, ``q`` the conformal quantile
of the normalised errors. A quiet key gets a narrow band and a volatile one a wide band,
each near the target coverage; a key not seen yet takes the pooled scale (of all keys).

Each key's coverage is followed too (an exponentially weighted share of its actuals inside
their intervals), for :meth:`KeyScales.coverage_bands`: how many keys are below, within
and above the target, a bounded number of series however many keys there are.

Memory: two floats and a count per key, at most ``max_keys`` keys (least recently scored
forgotten first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

#: Weight of a new error in a key's scale: about the last 40 errors count.
SCALE_ALPHA: Final = 0.05
#: Weight of a new hit or miss in a key's coverage: about the last 100 intervals count.
COVERAGE_ALPHA: Final = 0.02
#: Intervals a key needs before its coverage is judged.
MIN_JUDGED: Final = 50
_TINY: Final = 1e-12


class _Key:
    __slots__ = ("covered", "judged", "scale")

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.covered = 0.0
        self.judged = 0


class KeyScales:
    """The error scale and interval coverage of each key.

    Args:
        max_keys: keys kept; the least recently scored is forgotten beyond.
    """

    def __init__(self, max_keys: int = 1_000_000) -> None:
        self.max_keys = max_keys
        self.pooled: float | None = None
        self._keys: OrderedDict[str, _Key] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def normalise(
        self, keys: Sequence[str], abs_errors: Sequence[float], covered: Sequence[int]
    ) -> list[float]:
        """The errors divided by their key's scale before each, in order; then each error
        updates its key's scale (and the pooled one) and each interval its key's coverage.

        Args:
            keys: the key of each scored point.
            abs_errors: their absolute errors.
            covered: 1 inside the interval, 0 outside, -1 without one.
        """
        out: list[float] = []
        entries = self._keys
        for key, error, hit in zip(keys, abs_errors, covered, strict=True):
            entry = entries.get(key)
            if entry is None:
                entry = _Key(self.pooled if self.pooled is not None else error)
                entries[key] = entry
                if len(entries) > self.max_keys:
                    entries.popitem(last=False)
            else:
                entries.move_to_end(key)
            out.append(error / entry.scale if entry.scale > _TINY else error / _TINY)
            entry.scale += SCALE_ALPHA * (error - entry.scale)
            pooled = self.pooled
            self.pooled = error if pooled is None else pooled + SCALE_ALPHA * (error - pooled)
            if hit >= 0:
                entry.covered += COVERAGE_ALPHA * (hit - entry.covered)
                entry.judged += 1
        return out

    def scales(self, keys: Sequence[str]) -> npt.NDArray[np.float64]:
        """Each key's scale (the pooled one for a key not seen yet; NaN before any error)."""
        fallback = float("nan") if self.pooled is None else self.pooled
        entries = self._keys
        return np.fromiter(
            ((e.scale if (e := entries.get(k)) is not None else fallback) for k in keys),
            dtype=np.float64,
            count=len(keys),
        )

    def coverage_bands(self, coverage: float, tolerance: float = 0.05) -> dict[str, int]:
        """How many keys, among those with :data:`MIN_JUDGED` intervals, cover below
        ``coverage - tolerance``, within, and above ``coverage + tolerance`` (recently)."""
        bands = {"below": 0, "within": 0, "above": 0}
        for entry in self._keys.values():
            if entry.judged < MIN_JUDGED:
                continue
            # The weighted mean starts at 0: unbias it for keys with few intervals.
            share = entry.covered / (1 - (1 - COVERAGE_ALPHA) ** entry.judged)
            if share < coverage - tolerance:
                bands["below"] += 1
            elif share > coverage + tolerance:
                bands["above"] += 1
            else:
                bands["within"] += 1
        return bands
