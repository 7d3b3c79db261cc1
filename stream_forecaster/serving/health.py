"""What ``/healthz`` and ``/readyz`` answer for serve.

Alive: the main loop checked in within the last minute (it does on every turn, also while
it waits for a model, the input topic or a recovery). Ready: a model is loaded, input
partitions are assigned, the brokers answer, no recovery is under way and the input topic
was polled within the last 30 seconds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection
from typing import Final

from stream_forecaster.kafka.protocols import Partition, names

ALIVE_WITHIN_S: Final = 60.0
POLLING_WITHIN_S: Final = 30.0


class Health:
    """serve's liveness and readiness, from what the loop reports.

    Args:
        model: the version served, or ``None`` before the first model.
        partitions: the input partitions assigned.
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        model: Callable[[], str | None],
        partitions: Callable[[], Collection[Partition]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._model = model
        self._partitions = partitions
        self._clock = clock
        self._checked_in = clock()
        self._polled = -math.inf
        self.recovering = False
        #: Whether the brokers answer (the broker probe's verdict, once it runs).
        self.brokers_answer: Callable[[], bool] = lambda: True
        #: Why serve still waits for Kafka at start-up, while it does.
        self.waiting_for_kafka: str | None = None

    def check_in(self) -> None:
        """The main loop is alive."""
        self._checked_in = self._clock()

    def polled(self) -> None:
        """The main loop polled the input topic."""
        self._checked_in = self._polled = self._clock()

    def alive(self) -> tuple[bool, str]:
        age = self._clock() - self._checked_in
        return age < ALIVE_WITHIN_S, f"main loop checked in {age:.1f}s ago"

    def ready(self) -> tuple[bool, str]:
        version = self._model()
        partitions = self._partitions()
        not_yet = (
            (version is None, "no model loaded"),
            (self.waiting_for_kafka is not None, f"waiting for Kafka: {self.waiting_for_kafka}"),
            (not partitions, "no input partitions assigned"),
            (not self.brokers_answer(), "Kafka brokers do not answer"),
            (self.recovering, "recovering from a failed checkpoint"),
            (self._clock() - self._polled > POLLING_WITHIN_S, "not polling the input topic"),
        )
        for failing, reason in not_yet:
            if failing:
                return False, reason
        return True, f"serving model {version} on {names(partitions)}"
