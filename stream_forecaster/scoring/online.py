"""Online accuracy of the served forecasts, and conformal prediction intervals.

Pure logic: no Kafka, no Prometheus; ``serve`` exports these numbers as metrics.

Scoring. Every published forecast is held (:meth:`OnlineScorer.expect`) until the actual
value for its time arrives (:meth:`OnlineScorer.observe`); it is then scored against the
actual, and so is persistence (the target's last value, at the window's end) on the same
point. Forecasts are one step ahead, so a key has at most one pending forecast: a newer
one replaces it. A forecast that is never scored is counted by reason
(:data:`UNSCORED_REASONS`):

- ``superseded``: a forecast for a later time of the same key came first;
- ``no_actual``: a reading past its time came first (a gap), or the reading for its time
  had no usable target value (NaN or infinity);
- ``overflow``: more than ``max_pending`` keys had a pending forecast; the oldest went;
- ``forgotten``: the caller dropped it (:meth:`OnlineScorer.forget`: key evicted, or its
  partition revoked).

Per model version, the last ``window`` scored points give MAE, RMSE, persistence's MAE on
the same points, skill (``1 - MAE / persistence MAE``) and the observed interval coverage.
Scored points are recorded a batch at a time (the readings of a poll; one point for
:meth:`OnlineScorer.observe`): written into each version's ring buffers, whose float64
sums are then recomputed exactly (``math.fsum``), so the figures equal a plain
recomputation (:func:`offline_stats`) up to the final division, whatever the scales that
enter and leave the window.

Intervals. Split conformal on the most recent ``window`` absolute errors of all versions
together (so a model swap keeps the calibration): with ``n`` errors and coverage ``c``,
the half-width ``q`` is the ``ceil((n + 1) * c)``-th smallest error (at most the ``n``-th),
and the interval ``(forecast - q, forecast + q)``; none until ``min_errors`` errors. ``q``
is computed once per new error, not per forecast. With ``per_key``, the errors are first
divided by their key's recent error scale and the interval is ``forecast +- q * scale(key)``
(:mod:`~stream_forecaster.scoring.key_scales`): its width follows the key.

Not thread-safe: one scorer belongs to one processing loop.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from stream_forecaster.settings import ScoringSettings

from stream_forecaster.scoring.checks import check_all_finite, check_finite, checked_bounds
from stream_forecaster.scoring.conformal import ConformalIntervals
from stream_forecaster.scoring.figures import (
    Held,
    ScoredPoint,
    ScoredPoints,
    VersionStats,
    VersionWindow,
)

#: Why a forecast was not scored; every key of :attr:`OnlineScorer.unscored`.
UNSCORED_REASONS: Final = ("superseded", "no_actual", "overflow", "forgotten")


class OnlineScorer:
    """Scores forecasts as their actuals arrive, per model version, and gives conformal
    prediction intervals from the recent errors.

    Args:
        window: scored points per model version in the sliding MAE/RMSE window; also the
            number of recent absolute errors (all versions) the intervals are calibrated on.
        coverage: the intervals' target coverage, in (0, 1).
        min_errors: errors needed before intervals are given (at most ``window``).
        max_versions: model versions kept; the least recently scored one is forgotten.
        max_pending: keys with a pending forecast kept; beyond, the oldest forecast is
            dropped (``overflow``); also the keys whose error scale is kept.
        per_key: intervals whose width follows each key's recent error scale.
    """

    def __init__(
        self,
        window: int,
        coverage: float,
        min_errors: int,
        max_versions: int = 4,
        max_pending: int = 1_000_000,
        *,
        per_key: bool = False,
    ) -> None:
        for name, value in (
            ("window", window),
            ("min_errors", min_errors),
            ("max_versions", max_versions),
            ("max_pending", max_pending),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1; received {value}")
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be between 0 and 1 (exclusive); received {coverage}")
        if min_errors > window:
            raise ValueError(
                f"min_errors must be at most window ({window}), or no interval is ever given; "
                f"received {min_errors}"
            )
        self.window = window
        self.coverage = coverage
        self.min_errors = min_errors
        self.max_versions = max_versions
        self.max_pending = max_pending
        self.unscored: dict[str, int] = dict.fromkeys(UNSCORED_REASONS, 0)
        self._pending: OrderedDict[str, Held] = OrderedDict()
        self._versions: OrderedDict[str, VersionWindow] = OrderedDict()
        self.conformal = ConformalIntervals(
            window, coverage, min_errors, per_key=per_key, max_keys=max_pending
        )

    @classmethod
    def from_settings(
        cls, settings: ScoringSettings, max_versions: int = 4, max_pending: int = 1_000_000
    ) -> OnlineScorer:
        """A scorer configured by the ``scoring`` section of the settings."""
        return cls(
            window=settings.window,
            coverage=settings.coverage,
            min_errors=settings.min_errors,
            max_versions=max_versions,
            max_pending=max_pending,
            per_key=settings.interval_width == "per_key",
        )

    # -- pending forecasts -----------------------------------------------------------------

    @property
    def n_pending(self) -> int:
        """Keys with a forecast waiting for its actual."""
        return len(self._pending)

    def pending_ts(self, key: str) -> int | None:
        """The time of ``key``'s pending forecast, or None."""
        pending = self._pending.get(key)
        return None if pending is None else pending.ts

    def expect(
        self,
        key: str,
        ts: int,
        forecast: float,
        persistence: float,
        model_version: str,
        *,
        lower: float | None = None,
        upper: float | None = None,
    ) -> None:
        """Hold a forecast until the actual for ``ts`` arrives.

        A pending forecast of the same key for another time is replaced and counted as
        ``superseded``; one for the same time (the batch processed again after a failed
        checkpoint) is replaced without being counted.

        Args:
            key: the series key.
            ts: the time the forecast is for, epoch milliseconds.
            forecast: the forecast (finite; numpy scalars are taken as Python floats).
            persistence: the naive forecast for the same point: the target's last value, at
                the window's end (finite).
            model_version: the version of the model that made the forecast.
            lower: the interval's lower bound, or None (then ``upper`` is None too);
                keyword-only.
            upper: the interval's upper bound, or None; keyword-only.
        """
        forecast, persistence = float(forecast), float(persistence)  # numpy scalars too
        check_finite("forecast", forecast)
        check_finite("persistence", persistence)
        if (lower is None) != (upper is None):
            raise ValueError(
                f"lower and upper must both be given or both be None; received "
                f"lower={lower!r}, upper={upper!r}"
            )
        if lower is not None and upper is not None:
            lower, upper = float(lower), float(upper)
            check_finite("lower", lower)
            check_finite("upper", upper)
            if lower > upper:
                raise ValueError(f"expected lower <= upper; received {lower!r} > {upper!r}")
        self._hold(key, Held(ts, forecast, persistence, model_version, lower, upper))

    def expect_many(
        self,
        keys: Sequence[str],
        ts: Sequence[int],
        forecasts: npt.ArrayLike,
        persistence: npt.ArrayLike,
        model_version: str,
        *,
        lower: npt.ArrayLike | None = None,
        upper: npt.ArrayLike | None = None,
        actuals: Mapping[tuple[str, int], float] | None = None,
    ) -> int:
        """:meth:`expect` of each forecast in turn (one model's batch), the one-by-one checks
        done once on arrays; a forecast whose actual is in ``actuals`` is scored at once, as
        :meth:`score` right after its :meth:`expect` would (a batch that catches up holds
        the actuals of its own forecasts). Returns how many were scored.

        Args:
            keys: the series keys.
            ts: the times the forecasts are for, epoch milliseconds.
            forecasts: the forecasts (finite).
            persistence: the naive forecasts for the same points (finite).
            model_version: the version of the model that made them.
            lower: the intervals' lower bounds, or None (then ``upper`` is None too); NaN
                in both bounds: that forecast has no interval.
            upper: the intervals' upper bounds, or None.
            actuals: (key, ts) -> actual value, of the readings at hand.
        """
        values = np.asarray(forecasts, dtype=np.float64)
        naive = np.asarray(persistence, dtype=np.float64)
        if not len(keys) == len(ts) == len(values) == len(naive):
            raise ValueError(
                f"expected as many times, forecasts and persistence values as keys "
                f"({len(keys)}); received {len(ts)}, {len(values)} and {len(naive)}"
            )
        for name, array_ in (("forecast", values), ("persistence", naive)):
            check_all_finite(name, array_)
        bounds = checked_bounds(lower, upper, len(values))
        points = ScoredPoints()
        hold, take = self._hold, self._take
        for i, (key, stamp, forecast, naive_forecast) in enumerate(
            zip(keys, ts, values.tolist(), naive.tolist(), strict=True)
        ):
            pending = Held(
                stamp,
                forecast,
                naive_forecast,
                model_version,
                None if bounds is None else bounds[0][i],
                None if bounds is None else bounds[1][i],
            )
            hold(key, pending)
            actual = None if actuals is None else actuals.get((key, stamp))
            if actual is not None and (taken := take(key, stamp, actual)) is not None:
                points.add(key, *taken)
        self._record_many(points)
        return len(points.versions)

    def _hold(self, key: str, pending: Held) -> None:
        """Make ``pending`` the key's pending forecast (see :meth:`expect`)."""
        old = self._pending.pop(key, None)
        if old is not None:
            if old.ts != pending.ts:
                self.unscored["superseded"] += 1
        elif len(self._pending) >= self.max_pending:
            self._pending.popitem(last=False)
            self.unscored["overflow"] += 1
        self._pending[key] = pending

    def forget(self, key: str) -> bool:
        """Drop ``key``'s pending forecast (counted as ``forgotten``); returns whether there
        was one. For keys evicted from the windows, or of revoked partitions."""
        if self._pending.pop(key, None) is None:
            return False
        self.unscored["forgotten"] += 1
        return True

    def observe(self, key: str, ts: int, actual: float) -> ScoredPoint | None:
        """Score ``key``'s pending forecast if ``actual`` is its actual value.

        Args:
            key: the series key.
            ts: the reading's time, epoch milliseconds.
            actual: the reading's target value; NaN when not measured.

        Returns:
            The scored point when a forecast for ``ts`` was pending and ``actual`` is
            finite; else None. A pending forecast for an earlier time is dropped
            (``no_actual``), as is one for ``ts`` when ``actual`` is not finite; one for a
            later time stays pending.
        """
        scored = self._score(key, ts, actual)
        if scored is None:
            return None
        pending, actual, error, covered = scored
        return ScoredPoint(
            key=key,
            ts=ts,
            model_version=pending.model_version,
            forecast=pending.forecast,
            actual=actual,
            persistence=pending.persistence,
            lower=pending.lower,
            upper=pending.upper,
            abs_error=abs(error),
            squared_error=error * error,
            persistence_abs_error=abs(actual - pending.persistence),
            covered=None if covered < 0 else bool(covered),
        )

    def score(self, key: str, ts: int, actual: float) -> bool:
        """:meth:`observe` without building the :class:`ScoredPoint` (the hot path);
        returns whether a point was scored."""
        return self._score(key, ts, actual) is not None

    def score_many(self, keys: Sequence[str], ts: Sequence[int], actuals: Sequence[float]) -> int:
        """:meth:`score` of each reading in turn, the errors recorded together; returns how
        many were scored."""
        points = ScoredPoints()
        take = self._take
        for key, stamp, actual in zip(keys, ts, actuals, strict=True):
            if (taken := take(key, stamp, actual)) is not None:
                points.add(key, *taken)
        self._record_many(points)
        return len(points.versions)

    def _score(self, key: str, ts: int, actual: float) -> tuple[Held, float, float, int] | None:
        """Take ``key``'s pending forecast and record its errors if ``actual`` scores it
        (see :meth:`observe`); returns (pending, actual, error, covered: 1, 0 or -1 without
        an interval)."""
        if (taken := self._take(key, ts, actual)) is None:
            return None
        pending, actual = taken
        point = ScoredPoints()
        point.add(key, pending, actual)
        self._record_many(point)
        return pending, actual, actual - pending.forecast, point.covered[0]

    def _take(self, key: str, ts: int, actual: float) -> tuple[Held, float] | None:
        """Remove and return ``key``'s pending forecast with ``actual`` as a float, when
        ``actual`` scores it (see :meth:`observe`); else None (counting ``no_actual`` when
        the pending forecast is dropped)."""
        pending = self._pending.get(key)
        if pending is None or ts < pending.ts:
            return None
        del self._pending[key]
        actual = float(actual)
        if ts > pending.ts or not math.isfinite(actual):
            self.unscored["no_actual"] += 1
            return None
        return pending, actual

    def _record_many(self, points: ScoredPoints) -> None:
        """Record ``points``, in order: per version, and the absolute errors the intervals
        are calibrated on. (Versions are kept in the order of their last point; with more
        than ``max_versions`` versions in one batch, which are forgotten may differ from
        recording the points one by one.)"""
        k = len(points.versions)
        if not k:
            return
        for version in reversed(dict.fromkeys(reversed(points.versions))):
            self._window_of(version).add_many(points.of(version))
        self.conformal.add(points.keys, points.abs_errors, points.covered)

    def _window_of(self, version: str) -> VersionWindow:
        """The version's window, made the most recently scored (created if new)."""
        window = self._versions.get(version)
        if window is None:
            window = self._versions[version] = VersionWindow(self.window)
            if len(self._versions) > self.max_versions:
                self._versions.popitem(last=False)
        else:
            self._versions.move_to_end(version)
        return window

    # -- per-version accuracy --------------------------------------------------------------

    def versions(self) -> list[str]:
        """The model versions kept, least recently scored first (a version not listed any
        more was forgotten: remove its metric series)."""
        return list(self._versions)

    def stats(self, version: str) -> VersionStats | None:
        """Accuracy of ``version`` over its last ``window`` scored points; None when it was
        never scored or was forgotten."""
        window = self._versions.get(version)
        return None if window is None else window.stats()

    # -- conformal intervals ---------------------------------------------------------------

    @property
    def n_errors(self) -> int:
        """Errors the intervals are calibrated on (at most ``window``)."""
        return self.conformal.n_errors

    def half_width(self) -> float | None:
        """See :meth:`ConformalIntervals.half_width`."""
        return self.conformal.half_width()

    def interval(self, forecast: float, key: str | None = None) -> tuple[float, float] | None:
        """One forecast's interval (see :meth:`intervals`), or None."""
        bounds = self.conformal.intervals([forecast], None if key is None else [key])
        return None if bounds is None else (float(bounds[0][0]), float(bounds[1][0]))

    def intervals(
        self, forecasts: npt.ArrayLike, keys: Sequence[str] | None = None
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        """See :meth:`ConformalIntervals.intervals`."""
        return self.conformal.intervals(forecasts, keys)

    def coverage_bands(self) -> dict[str, int] | None:
        """See :meth:`ConformalIntervals.coverage_bands`."""
        return self.conformal.coverage_bands()
