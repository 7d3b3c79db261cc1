"""Calendar inputs: the time of day and the day of the week of each reading, as a sine and
a cosine (so that 23:00 is next to 00:00), computed from the reading's own time.

A bundle declares the ones it was trained with (``calendar`` in its manifest); they enter
the network after the declared features, two columns each. Training, backtests,
retraining and serving all compute them here from the reading times, so they cannot
disagree. In serving, a window's step times are its newest reading's time minus whole
sampling intervals (a window never spans a gap).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import Series

CalendarInput = Literal["hour_of_day", "day_of_week"]
CALENDAR_INPUTS: Final[tuple[CalendarInput, ...]] = ("hour_of_day", "day_of_week")
_PERIOD_MS: Final = {"hour_of_day": 86_400_000, "day_of_week": 7 * 86_400_000}


def column_names(inputs: Sequence[CalendarInput]) -> list[str]:
    """The names of the columns ``inputs`` add, in order (``hour_of_day_sin``, ...)."""
    return [f"{name}_{part}" for name in inputs for part in ("sin", "cos")]


def calendar_columns(
    ts_ms: npt.NDArray[np.int64], inputs: Sequence[CalendarInput]
) -> npt.NDArray[np.float64]:
    """Sine and cosine of each input's phase at each time.

    Args:
        ts_ms: times, epoch milliseconds, any shape.
        inputs: the calendar inputs.

    Returns:
        Shape ``ts_ms.shape + (2 * len(inputs),)``.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    columns = []
    for name in inputs:
        period = _PERIOD_MS[name]
        angle = 2 * np.pi * (np.mod(ts, period) / period)
        columns += [np.sin(angle), np.cos(angle)]
    if not columns:
        return np.empty((*ts.shape, 0))
    return np.stack(columns, axis=-1)


def with_calendar(series: Series, inputs: Sequence[CalendarInput]) -> Series:
    """``series`` with the calendar columns after its features (itself when none)."""
    if not inputs:
        return series
    extra = calendar_columns(series.ts, inputs)
    return replace(series, features=np.concatenate([series.features, extra], axis=1))


def window_calendar(
    windows: npt.NDArray[np.float32],
    end_ts: npt.NDArray[np.int64],
    intervals_ms: npt.NDArray[np.int64],
    inputs: Sequence[CalendarInput],
) -> npt.NDArray[np.float32]:
    """Serving's windows with the calendar columns of each step appended.

    Args:
        windows: shape ``(n, window, n_features)``.
        end_ts: each window's newest reading time.
        intervals_ms: each window's sampling interval.
        inputs: the calendar inputs.
    """
    if not inputs:
        return windows
    n, steps = windows.shape[0], windows.shape[1]
    back = np.arange(steps - 1, -1, -1, dtype=np.int64)  # oldest step first
    ends = np.asarray(end_ts, dtype=np.int64).reshape(n, 1)
    steps_ms = np.asarray(intervals_ms, dtype=np.int64).reshape(n, 1)
    times = (ends - back * steps_ms).astype(np.int64)
    extra = calendar_columns(times, inputs).astype(np.float32)
    return np.concatenate([windows, extra], axis=2)
