"""Series and one-step-ahead samples: a key's history sorted by time, cut into (window ->
next target) samples that never cross series nor gaps in time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

_GAP_FACTOR: Final = 1.5


@dataclass(frozen=True)
class Series:
    """The history of one series key, sorted by time.

    Args:
        key: the series key.
        ts: reading times, epoch milliseconds, shape ``(n,)``.
        features: feature values after filling, shape ``(n, n_features)``; NaN only where
            nothing could be filled.
        target: target values after filling, shape ``(n,)``.
        target_observed: True where the target was measured (not filled), shape ``(n,)``.
    """

    key: str
    ts: npt.NDArray[np.int64]
    features: npt.NDArray[np.float64]
    target: npt.NDArray[np.float64]
    target_observed: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Table:
    """A CSV read into series, with the category codes it used."""

    series: list[Series]
    categories: dict[str, tuple[str, ...]]
    rows: int


@dataclass(frozen=True)
class Windows:
    """One-step-ahead samples: each input window and the target value after it.

    Args:
        inputs: raw (unscaled) windows, shape ``(m, window, n_features)``.
        targets: the target at the step after each window, shape ``(m,)``.
        last_targets: the target at each window's last step, shape ``(m,)``.
        target_ts: the time of each target, shape ``(m,)``.
        series_index: which series (index into the table's series) each sample is from.
    """

    inputs: npt.NDArray[np.float64]
    targets: npt.NDArray[np.float64]
    last_targets: npt.NDArray[np.float64]
    target_ts: npt.NDArray[np.int64]
    series_index: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.targets)

    def select(self, mask: npt.NDArray[np.bool_]) -> Windows:
        """The samples where ``mask`` is True."""
        return Windows(
            inputs=self.inputs[mask],
            targets=self.targets[mask],
            last_targets=self.last_targets[mask],
            target_ts=self.target_ts[mask],
            series_index=self.series_index[mask],
        )


def make_windows(series: Sequence[Series], window: int) -> Windows:
    """Cut every series into (window -> next target) samples.

    A sample is kept only when all its inputs have values, its target was observed (not
    filled), and no time gap larger than 1.5 sampling intervals lies inside it. Samples
    never cross series.

    Args:
        series: the series, e.g. from :func:`read_table`.
        window: readings per input window.
    """
    if window < 1:
        raise ValueError(f"expected window >= 1, got {window}")
    parts: list[Windows] = []
    for index, s in enumerate(series):
        n = len(s.ts)
        if n <= window:
            continue
        views = np.lib.stride_tricks.sliding_window_view(s.features, window, axis=0)
        inputs = np.moveaxis(views, -1, 1)[: n - window]  # (m, window, f); last one has no target
        ends = np.arange(window - 1, n - 1)
        complete = ~np.isnan(inputs).any(axis=(1, 2))
        segment = np.concatenate([[0], np.cumsum(_gaps(s.ts))])
        contiguous = segment[ends + 1] == segment[ends - window + 1]
        keep = complete & contiguous & s.target_observed[ends + 1]
        parts.append(
            Windows(
                inputs=np.ascontiguousarray(inputs[keep]),
                targets=s.target[ends + 1][keep],
                last_targets=s.target[ends][keep],
                target_ts=s.ts[ends + 1][keep],
                series_index=np.full(int(keep.sum()), index, dtype=np.int64),
            )
        )
    if not parts:
        shape = (0, window, series[0].features.shape[1] if series else 0)
        return Windows(
            np.empty(shape), np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0, np.int64)
        )
    return Windows(
        inputs=np.concatenate([p.inputs for p in parts]),
        targets=np.concatenate([p.targets for p in parts]),
        last_targets=np.concatenate([p.last_targets for p in parts]),
        target_ts=np.concatenate([p.target_ts for p in parts]),
        series_index=np.concatenate([p.series_index for p in parts]),
    )


def sampling_interval_ms(ts: npt.NDArray[np.int64]) -> int:
    """The typical step between readings (median difference); 0 for fewer than 2."""
    if len(ts) < 2:
        return 0
    return int(np.median(np.diff(ts)))


def forward_fill(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Fill NaN with the last value above it, column by column (leading NaN stay)."""
    n = len(values)
    valid = ~np.isnan(values)
    last_valid = np.where(valid, np.arange(n)[:, None], 0)
    np.maximum.accumulate(last_valid, axis=0, out=last_valid)
    filled = np.take_along_axis(values, last_valid, axis=0)
    seen = np.maximum.accumulate(valid, axis=0)
    return np.where(seen, filled, np.nan)


def _gaps(ts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """1 where the step to the next reading is a gap (> 1.5 sampling intervals), else 0."""
    steps = np.diff(ts)
    interval = sampling_interval_ms(ts)
    if interval <= 0:
        return np.zeros(len(steps), dtype=np.int64)
    return (steps > _GAP_FACTOR * interval).astype(np.int64)
