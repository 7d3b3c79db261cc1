"""Pacing a feed: each record sent when it is due, at a rate or at a speed-up of data time."""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Sleeps until each record is due, due times counted from the start on a monotonic clock.

    Records due within ``burst_s`` go out without sleeping (high rates: small bursts). When
    more than ``max_lag_s`` behind (the broker stalled), the schedule restarts from now
    rather than catching up in a flood.

    Args:
        rate: records per second in total; ``None`` to pace by ``speedup``, data seconds
            per wall second.
        clock, sleep: monotonic seconds and sleeping, injectable for tests.
    """

    def __init__(
        self,
        rate: float | None = None,
        speedup: float = 1.0,
        *,
        burst_s: float = 0.005,
        max_lag_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate, self.speedup, self.burst_s, self.max_lag_s = rate, speedup, burst_s, max_lag_s
        self._clock, self._sleep = clock, sleep
        self._start: float | None = None
        self._origin = 0.0  # the first start: schedule restarts move _start, not this
        self._first_ms = 0

    def due(self, index: int, data_ms: int) -> float:
        """When record ``index``, of data time ``data_ms``, is due; the first one starts."""
        if self._start is None:
            self._start, self._first_ms = self._clock(), data_ms
            self._origin = self._start
        if self.rate is not None:
            return self._start + index / self.rate
        return self._start + (data_ms - self._first_ms) / 1000 / self.speedup

    def since_start_ms(self, index: int, data_ms: int) -> int:
        """When record ``index`` is due, in ms after the first record was."""
        return round((self.due(index, data_ms) - self._origin) * 1000)

    def wait(self, index: int, data_ms: int) -> float:
        """Sleep until the record is due (when worth it); returns the seconds slept."""
        due, now = self.due(index, data_ms), self._clock()
        if due - now > self.burst_s:
            self._sleep(due - now)
            return due - now
        if now - due > self.max_lag_s and self._start is not None:
            self._start += now - due
        return 0.0
