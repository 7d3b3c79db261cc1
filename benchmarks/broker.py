"""The Kafka cluster a benchmark runs on: ``SF_BENCH_BOOTSTRAP``, or a local broker
started for the run with the test harness's kafka-local wrapper, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def bench_bootstrap(report: Callable[[str], None]) -> Iterator[str]:
    """Yield a bootstrap address; a broker started here is stopped on exit."""
    external = os.environ.get("SF_BENCH_BOOTSTRAP")
    if external:
        yield external
        return
    from tests.kafka_broker import LocalBroker

    broker = LocalBroker(data_dir=Path(tempfile.mkdtemp(prefix="sf-bench-kafka-")))
    report("starting the local Kafka broker")
    try:
        yield broker.start()
    finally:
        broker.stop()
