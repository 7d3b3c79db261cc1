"""The Kafka cluster a benchmark runs on: ``SF_BENCH_BOOTSTRAP``, or a local broker
started for the run with the test harness's kafka-local wrapper, stopped afterwards; and
a ``serve`` process on it for the suites that measure one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.serve_process import ServeProcess


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


def bench_serve(
    bootstrap: str, name: str, partitions: int, model: Any, extra_env: dict[str, str]
) -> ServeProcess:
    """A ``serve`` process (not started) on new input, output and dead-letter topics, with
    ``model`` (an untrained Keras seed LSTM) as the only bundle of its model folder; its
    log and model folder are in a new temporary folder (``serve.log_path.parent``)."""
    from benchmarks.inference import _bundle
    from tests.kafka_broker import create_topic
    from tests.serve_process import ServeProcess

    work = Path(tempfile.mkdtemp(prefix=f"sf-bench-{name}-"))
    models = work / "models"
    models.mkdir()
    _bundle(model).save(models)
    return ServeProcess(
        bootstrap=bootstrap,
        input_topic=create_topic(bootstrap, "bench-in", partitions),
        output_topic=create_topic(bootstrap, "bench-out", partitions),
        dead_letter_topic=create_topic(bootstrap, "bench-dlq", 1),
        model_path=models,
        log_path=work / "serve.log",
        extra_env=extra_env,
    )
