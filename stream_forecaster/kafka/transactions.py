"""The transactional producer's blocking calls, each with a bound.

kafka-python 3.0.12 waits for ``send_offsets_to_transaction``, ``commit_transaction`` and
``abort_transaction`` without a timeout. After a broker outage one of their answers can be
lost, and serve's loop then waited until the shutdown watchdog killed it on SIGTERM (once
in 3 runs of the SIGTERM stress script). Here each gives up at once when ``stop`` is set
(SIGTERM then ends serve cleanly), and after ``timeout_s`` at the most; giving up raises
:class:`~kafka.errors.KafkaTimeoutError`, which the loop recovers from with a new producer
(whose ``init_transactions`` aborts what the old one left open).

The bound is long (:data:`TRANSACTION_WAIT_S`) on purpose: an answer that is merely late,
during a broker outage, must be waited for. A shorter one (the 30 s request timeout) gave
up on commits in flight while the broker came back, and the transactions left behind held
a changelog partition's stable offset for minutes.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from kafka.errors import KafkaTimeoutError

#: How often a wait looks at ``stop``.
_STEP_MS: Final = 200
#: The longest wait for one transactional answer (not a stall forever).
TRANSACTION_WAIT_S: Final = 300.0


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
