"""The figures of online scoring: scored points, each model version's sliding window of
them with exactly summed errors, and the same figures by plain recomputation
(:func:`offline_stats`) to check them against."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

#: An offline point: (model_version, forecast, actual, persistence, lower, upper).
OfflinePoint = tuple[str, float, float, float, float | None, float | None]


class ScoredPoint(NamedTuple):
    """One forecast scored against its actual (a named tuple: cheap to make, one per
    scored reading).

    Args:
        key: the series key.
        ts: the time the forecast was for, epoch milliseconds.
        model_version: the version of the model that made it.
        forecast: the forecast.
        actual: the target's value at ``ts``.
        persistence: the naive forecast (the target's value at the window's end).
        lower: the interval's lower bound, or None when it had none.
        upper: the interval's upper bound, or None when it had none.
        abs_error: ``|actual - forecast|``.
        squared_error: ``(actual - forecast) ** 2``.
        persistence_abs_error: ``|actual - persistence|``.
        covered: ``lower <= actual <= upper``; None without an interval.
    """

    key: str
    ts: int
    model_version: str
    forecast: float
    actual: float
    persistence: float
    lower: float | None
    upper: float | None
    abs_error: float
    squared_error: float
    persistence_abs_error: float
    covered: bool | None


@dataclass(frozen=True)
class VersionStats:
    """Accuracy of one model version over its last ``window`` scored points.

    Args:
        n: scored points in the window (at most ``window``).
        scored_total: points scored for this version since it was first (or again) seen.
        mae: mean absolute error.
        rmse: root mean squared error.
        persistence_mae: persistence's mean absolute error on the same points.
        skill: ``1 - mae / persistence_mae``; None when ``persistence_mae`` is 0.
        coverage: share of the points with an interval whose actual was inside it; None
            when no point in the window had an interval.
        n_intervals: points in the window that had an interval.
    """

    n: int
    scored_total: int
    mae: float
    rmse: float
    persistence_mae: float
    skill: float | None
    coverage: float | None
    n_intervals: int


def _stats(
    *,
    n: int,
    scored_total: int,
    sum_abs: float,
    sum_squared: float,
    sum_persistence: float,
    n_intervals: int,
    n_covered: int,
) -> VersionStats:
    mae = sum_abs / n
    persistence_mae = sum_persistence / n
    return VersionStats(
        n=n,
        scored_total=scored_total,
        mae=mae,
        rmse=math.sqrt(sum_squared / n),
        persistence_mae=persistence_mae,
        skill=None if persistence_mae == 0 else 1.0 - mae / persistence_mae,
        coverage=n_covered / n_intervals if n_intervals else None,
        n_intervals=n_intervals,
    )


class _RunningSum:
    """The values of a ring buffer and their correctly rounded float64 sum."""

    __slots__ = ("total", "values", "view")

    def __init__(self, window: int) -> None:
        self.values = array("d", bytes(8 * window))
        self.view = np.frombuffer(self.values, dtype=np.float64)  # the same memory
        self.total = 0.0

    def replace_many(self, slots: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        """Put ``values`` at distinct ``slots``, then sum exactly again (one ``fsum`` per
        batch)."""
        self.view[slots] = values
        self.total = math.fsum(self.values)


class VersionWindow:
    """The last ``window`` scored points of one model version."""

    __slots__ = (
        "_coverage_view",
        "abs_errors",
        "coverage",
        "head",
        "n",
        "n_covered",
        "n_intervals",
        "persistence_errors",
        "scored_total",
        "squared_errors",
        "window",
    )

    def __init__(self, window: int) -> None:
        self.window = window
        self.abs_errors = _RunningSum(window)
        self.squared_errors = _RunningSum(window)
        self.persistence_errors = _RunningSum(window)
        # Per slot: -1 no interval (or unused), 0 not covered, 1 covered.
        self.coverage = array("b", [-1]) * window
        self._coverage_view = np.frombuffer(self.coverage, dtype=np.int8)  # the same memory
        self.head = 0
        self.n = 0
        self.scored_total = 0
        self.n_intervals = 0
        self.n_covered = 0

    def add_many(self, points: ScoredPoints) -> None:
        """Add ``points`` (all of this version), in order: the oldest in the window go."""
        k = len(points.abs_errors)
        kept = min(k, self.window)  # of more points than the window holds, the last ones
        slots = (self.head + np.arange(k - kept, k)) % self.window
        covered = np.asarray(points.covered[k - kept :], dtype=np.int8)
        old = self._coverage_view[slots]
        self.n_intervals += int((covered >= 0).sum()) - int((old >= 0).sum())
        self.n_covered += int(covered[covered > 0].sum()) - int(old[old > 0].sum())
        self._coverage_view[slots] = covered
        for running, values in (
            (self.abs_errors, points.abs_errors),
            (self.squared_errors, points.squared_errors),
            (self.persistence_errors, points.persistence_errors),
        ):
            running.replace_many(slots, np.asarray(values[k - kept :], dtype=np.float64))
        self.head = (self.head + k) % self.window
        self.n = min(self.n + k, self.window)
        self.scored_total += k

    def stats(self) -> VersionStats:
        return _stats(
            n=self.n,
            scored_total=self.scored_total,
            sum_abs=self.abs_errors.total,
            sum_squared=self.squared_errors.total,
            sum_persistence=self.persistence_errors.total,
            n_intervals=self.n_intervals,
            n_covered=self.n_covered,
        )


@dataclass
class ScoredPoints:
    """Scored points waiting to be recorded together (:meth:`OnlineScorer.score_many`)."""

    versions: list[str] = field(default_factory=list)
    abs_errors: list[float] = field(default_factory=list)
    squared_errors: list[float] = field(default_factory=list)
    persistence_errors: list[float] = field(default_factory=list)
    covered: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def add(self, key: str, pending: Held, actual: float) -> None:
        """Score ``key``'s ``pending`` forecast against ``actual``."""
        error = actual - pending.forecast
        self.keys.append(key)
        self.versions.append(pending.model_version)
        self.abs_errors.append(abs(error))
        self.squared_errors.append(error * error)
        self.persistence_errors.append(abs(actual - pending.persistence))
        self.covered.append(_covered(pending, actual))

    def of(self, version: str) -> ScoredPoints:
        """The points of ``version``, in order."""
        if all(v == version for v in self.versions):
            return self
        mine = [i for i, v in enumerate(self.versions) if v == version]
        return ScoredPoints(
            [version] * len(mine),
            [self.abs_errors[i] for i in mine],
            [self.squared_errors[i] for i in mine],
            [self.persistence_errors[i] for i in mine],
            [self.covered[i] for i in mine],
            [self.keys[i] for i in mine],
        )


class Held(NamedTuple):
    """A forecast held until the actual value for its time arrives."""

    ts: int
    forecast: float
    persistence: float
    model_version: str
    lower: float | None
    upper: float | None


def _covered(pending: Held, actual: float) -> int:
    """1 when ``actual`` is inside the pending forecast's interval, 0 outside, -1 without."""
    if pending.lower is None or pending.upper is None:
        return -1
    return int(pending.lower <= actual <= pending.upper)


def offline_stats(points: Iterable[OfflinePoint], window: int) -> dict[str, VersionStats]:
    """The figures of :meth:`OnlineScorer.stats`, by plain recomputation.

    Args:
        points: scored points in the order they were scored, each
            ``(model_version, forecast, actual, persistence, lower, upper)``, with
            ``lower``/``upper`` None when the forecast had no interval.
        window: points per version in the sliding window.

    Returns:
        Each version's figures over its last ``window`` points, in order of first appearance.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1; received {window}")
    by_version: dict[str, list[OfflinePoint]] = {}
    for point in points:
        by_version.setdefault(point[0], []).append(point)
    result: dict[str, VersionStats] = {}
    for version, all_points in by_version.items():
        last = all_points[-window:]
        abs_errors: list[float] = []
        squared_errors: list[float] = []
        persistence_errors: list[float] = []
        n_intervals = n_covered = 0
        for _, forecast, actual, persistence, lower, upper in last:
            error = actual - forecast
            abs_errors.append(abs(error))
            squared_errors.append(error * error)
            persistence_errors.append(abs(actual - persistence))
            if lower is not None and upper is not None:
                n_intervals += 1
                n_covered += lower <= actual <= upper
        result[version] = _stats(
            n=len(last),
            scored_total=len(all_points),
            sum_abs=math.fsum(abs_errors),
            sum_squared=math.fsum(squared_errors),
            sum_persistence=math.fsum(persistence_errors),
            n_intervals=n_intervals,
            n_covered=n_covered,
        )
    return result
