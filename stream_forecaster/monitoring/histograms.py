"""Histogram buckets, and a histogram for the hot path that counts a batch of values at a
time (:class:`BulkHistogram`)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

#: Latency buckets in seconds: 1 ms .. 60 s.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
#: Inference buckets in seconds: 50 µs .. 5 s.
INFERENCE_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


#: Observations :meth:`BulkHistogram.observe` holds before counting them (between scrapes).
_FOLD_AT = 10_000


class BulkHistogram:
    """A histogram for the hot path, exported exactly as a prometheus_client ``Histogram``
    with the same buckets would be: values are counted a batch at a time (one numpy pass)
    instead of one locked ``observe`` each.

    Args:
        name: the metric name (samples ``_bucket``, ``_count``, ``_sum``).
        documentation: its help text.
        buckets: upper bounds, ascending (``+Inf`` is added).
        registry: where to register it.
    """

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.name = name
        self.documentation = documentation
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above all
        self._sum = 0.0
        self._lock = threading.Lock()
        self._held: deque[float] = deque()  # appended from any thread, folded in here
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count one value (cheap: from a client callback thread, for instance)."""
        self._held.append(value)
        if len(self._held) >= _FOLD_AT:
            self._fold()

    def observe_many(self, values: npt.ArrayLike) -> None:
        """Count a batch of values."""
        array = np.asarray(values, dtype=np.float64).ravel()
        if not array.size:
            return
        slots = np.searchsorted(self._bounds, array, side="left")  # value <= bound
        counts = np.bincount(slots, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(array.sum())

    def _fold(self) -> None:
        """Count the held values. Two threads may fold at once (a callback reaching
        ``_FOLD_AT`` while a scrape collects): each value is popped by exactly one."""
        held, values = self._held, []
        try:
            for _ in range(len(held)):
                values.append(held.popleft())
        except IndexError:  # the other fold took the rest
            pass
        self.observe_many(values)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        self._fold()
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        bounds = [floatToGoString(b) for b in self._bounds.tolist()]  # type: ignore[no-untyped-call]
        bounds.append("+Inf")
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(bounds, cumulative, strict=True)),
            sum_value=total,
        )
