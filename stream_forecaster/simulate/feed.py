"""A feed: one pass over real or synthetic data, every reading in send order (time, then
key), and the readings it yields."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream_forecaster.data.series import sampling_interval_ms

#: A reading as sent: (key, ts in epoch ms, feature values, None where not measured).
Reading = tuple[str, int, dict[str, float | None]]
#: One key's data: (key, times, values of shape (n, n_features)).
Series = tuple[str, npt.NDArray[np.int64], npt.NDArray[np.float64]]


@dataclass(frozen=True)
class Feed:
    """One pass over the data: every reading in send order (time, then key).

    Args:
        keys: the series keys, which ``key_index`` (shape ``(m,)``) points into.
        features: the feature names, the columns of ``values`` (``(m, n_features)``, NaN
            is sent as null).
        ts: each reading's data time, epoch ms, shape ``(m,)``.
        interval_ms: the sampling interval; a pass spans ``ts[-1] - ts[0] + interval_ms``.
    """

    keys: tuple[str, ...]
    features: tuple[str, ...]
    key_index: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    interval_ms: int

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def merge(cls, series: Sequence[Series], features: Sequence[str]) -> Feed:
        """Interleave per-key series by time; readings at one time go in key order."""
        key_index = np.concatenate([np.full(len(ts), k) for k, (_, ts, _) in enumerate(series)])
        ts = np.concatenate([s[1] for s in series])
        order = np.lexsort((key_index, ts))
        interval = max(sampling_interval_ms(s[1]) for s in series)
        values = np.concatenate([s[2] for s in series])[order]
        keys = tuple(s[0] for s in series)
        return cls(keys, tuple(features), key_index[order], ts[order], values, interval or 1000)


def readings(feed: Feed, *, shift_ms: int = 0, loop: bool = False) -> Iterator[Reading]:
    """The feed's readings as ``(key, ts_ms, values)``, NaN as ``None``.

    Args:
        feed: the data.
        shift_ms: added to every data time (see :func:`timestamp_shift`).
        loop: repeat forever, each pass one data span later, so times never repeat.
    """
    span = int(feed.ts[-1] - feed.ts[0]) + feed.interval_ms
    for n in itertools.count():
        offset = shift_ms + n * span
        for k, ts, row in zip(feed.key_index.tolist(), feed.ts.tolist(), feed.values, strict=True):
            values = dict(zip(feed.features, row.tolist(), strict=True))
            yield feed.keys[k], ts + offset, {f: _or_none(v) for f, v in values.items()}
        if not loop:
            return


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


class LiveStamps:
    """``live`` timestamps: each reading stamped with the wall-clock time it is due to be
    sent, and always after the key's previous reading (high rates put several of a key's
    readings in one millisecond).

    Args:
        start_ms: the wall-clock time of the first reading, epoch ms.
    """

    def __init__(self, start_ms: int) -> None:
        self.start_ms = start_ms
        self._last: dict[str, int] = {}

    def stamp(self, key: str, since_start_ms: int) -> int:
        ts = max(self.start_ms + since_start_ms, self._last.get(key, -1) + 1)
        self._last[key] = ts
        return ts


def timestamp_shift(feed: Feed, mode: str, now_ms: int) -> int:
    """What to add to data times: ``shifted`` makes the first reading ``now_ms``
    (``original`` and ``live`` keep them: ``live`` stamps each reading as it is sent)."""
    return now_ms - int(feed.ts[0]) if mode == "shifted" else 0
