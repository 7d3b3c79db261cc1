"""The transactional producer's blocking calls, each with a bound.

kafka-python 3.0.12 waits for ``send_offsets_to_transaction``, ``commit_transaction`` and
``abort_transaction`` without a timeout. After a broker outage one of their answers can be
lost, and serve's loop then waited forever (seen once in 3 runs of the SIGTERM stress
script). Here each waits at most ``timeout_s`` and gives up at once when ``stop`` is set;
giving up raises :class:`~kafka.errors.KafkaTimeoutError`, which the loop recovers from
with a new producer (whose ``init_transactions`` aborts what the old one left open).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from kafka.errors import KafkaTimeoutError

#: How often a wait looks at ``stop``.
_STEP_MS: Final = 200


def send_offsets(
    producer: Any, offsets: Any, group_metadata: Any, *, timeout_s: float, stop: threading.Event
) -> None:
    """``producer.send_offsets_to_transaction(offsets, group_metadata)``, bounded."""
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:  # not kafka-python's producer (a test's fake): its own call
        producer.send_offsets_to_transaction(offsets, group_metadata)
        return
    _wait(
        producer,
        manager.send_offsets_to_transaction(offsets, group_metadata),
        "send_offsets_to_transaction",
        timeout_s,
        stop,
    )


def commit(producer: Any, *, timeout_s: float, stop: threading.Event) -> None:
    """``producer.commit_transaction()``, bounded."""
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        producer.commit_transaction()
        return
    _wait(producer, manager.begin_commit(), "commit_transaction", timeout_s, stop)


def abort(producer: Any, *, timeout_s: float, stop: threading.Event) -> None:
    """``producer.abort_transaction()``, bounded."""
    manager = getattr(producer, "_transaction_manager", None)
    if manager is None:
        producer.abort_transaction()
        return
    _wait(producer, manager.begin_abort(), "abort_transaction", timeout_s, stop)


def _wait(producer: Any, result: Any, what: str, timeout_s: float, stop: threading.Event) -> None:
    """Wake the sender and wait for ``result``; its error is raised as kafka-python would."""
    producer._sender.wakeup()
    deadline = time.monotonic() + timeout_s
    while not result.wait(timeout_ms=_STEP_MS):  # raises the request's error, if any
        if stop.is_set():
            raise KafkaTimeoutError(f"{what} abandoned: stopping")
        if time.monotonic() >= deadline:
            raise KafkaTimeoutError(f"{what} got no answer within {timeout_s:g}s")
