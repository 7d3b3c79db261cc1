"""The serve loop with fake Kafka clients, wired as serve wires it: both delivery
guarantees, a failed checkpoint recovered from in place, and a revocation mid-stream."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.serving.delivery import Delivery, choose_delivery
from stream_forecaster.serving.engine import InferenceEngine
from stream_forecaster.serving.health import Health
from stream_forecaster.serving.loop import ServeLoop, use_engine
from stream_forecaster.serving.partitions import Assignment
from stream_forecaster.serving.pipeline import BatchProcessor
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.settings import Settings
from stream_forecaster.wire.readings import encode_reading
from stream_forecaster.wire.records import Record
from tests.harness.bundles import untrained_bundle
from tests.harness.fake_kafka import FakeConsumer, FakeProducer, Turn

IN, OUT = "in", "out"
HOUR = 3_600_000


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    return InferenceEngine(untrained_bundle(window=3), threads=1)


class NoNewModels:
    """No model arrives while the loop runs."""

    def take(self) -> None:
        return None


class FakeChangelog:
    """The snapshots a restore reads, per input partition."""

    def __init__(self) -> None:
        self.snapshots: dict[int, dict[str, bytes]] = {}
        self.reads: list[list[int]] = []

    def read(self, partitions: Sequence[int]) -> dict[int, dict[str, bytes]]:
        self.reads.append(sorted(partitions))
        return {p: dict(self.snapshots.get(p, {})) for p in partitions}

    def close(self) -> None:
        pass


@dataclass
class Run:
    """A loop assembled as serve assembles it, around fakes."""

    loop: ServeLoop
    consumer: FakeConsumer
    producers: list[FakeProducer]
    delivery: Delivery
    processor: BatchProcessor
    registry: CollectorRegistry
    changelog: FakeChangelog

    def forecasts(self) -> list[dict[str, object]]:
        """Every forecast sent, by every producer (committed or not)."""
        return [
            json.loads(s.value or b"")
            for producer in self.producers
            for s in producer.topics(OUT)
            if s.future.is_done and not s.future.failed()
        ]


def assemble(
    engine: InferenceEngine,
    turns: list[Turn],
    producers: list[FakeProducer],
    **processing: object,
) -> Run:
    settings = Settings(
        topics={"input": IN, "output": OUT},
        processing={"commit_interval_ms": 0, "max_wait_ms": 0, **processing},
        state={"retry_backoff_max_s": 0.01},
    )
    stop = threading.Event()
    registry = CollectorRegistry()
    recorder = ServeRecorder(registry)
    processor = BatchProcessor(settings, clock=lambda: 0.0)
    use_engine(processor, engine, recorder)
    consumer = FakeConsumer(IN, turns, on_end=stop.set)
    made: Iterator[FakeProducer] = iter(producers)
    delivery = choose_delivery(
        settings, consumer, processor.changelog, recorder, lambda: next(made)
    )
    assignment = Assignment(recorder, before_revoke=delivery.before_revoke)
    consumer.subscribe([IN], assignment)
    health = Health(model=lambda: engine.version, partitions=lambda: assignment.partitions)
    changelog = FakeChangelog()
    loop = ServeLoop.assemble(
        settings,
        consumer,
        processor,
        delivery,
        assignment=assignment,
        changelog=changelog,  # type: ignore[arg-type]
        models=NoNewModels(),
        health=health,
        metrics=recorder,
        stop=stop,
    )
    delivery.restart()
    return Run(loop, consumer, producers, delivery, processor, registry, changelog)


def reading(key: str, i: int, offset: int, partition: int) -> Record:
    k, v = encode_reading(key, i * HOUR, {"t": 10.0 + i, "rh": 20.0 + i, "p": 30.0 - i})
    return Record(IN, partition, offset, 1_700_000_000_000, k, v)


def hours(key: str, partition: int, first: int, last: int, offset: int = 0) -> list[Record]:
    return [reading(key, i, offset + i - first, partition) for i in range(first, last)]


def test_at_least_once_forecasts_every_full_window_and_commits_what_it_read(
    engine: InferenceEngine,
) -> None:
    run = assemble(
        engine,
        [
            Turn(assign=[0, 1]),
            Turn(records=hours("a", 0, 0, 4) + hours("b", 1, 0, 3)),
            Turn(records=hours("b", 1, 3, 5, offset=3)),
        ],
        [FakeProducer()],
    )
    run.loop.run()

    assert sorted((f["key"], f["window_end_ts"]) for f in run.forecasts()) == [
        ("a", 2 * HOUR),
        ("a", 3 * HOUR),
        ("b", 2 * HOUR),
        ("b", 3 * HOUR),
        ("b", 4 * HOUR),
    ]
    assert run.consumer.committed_offsets == {(IN, 0): 4, (IN, 1): 5}
    assert run.changelog.reads == [[0, 1]]  # the windows of assigned partitions restored
    assert run.registry.get_sample_value("sf_forecasts_total") == 5
    assert run.registry.get_sample_value("sf_records_total", {"topic": IN}) == 9


def test_exactly_once_commits_each_batch_in_its_transaction(engine: InferenceEngine) -> None:
    producer = FakeProducer()
    run = assemble(
        engine,
        [Turn(assign=[0]), Turn(records=hours("a", 0, 0, 3)), Turn(records=hours("a", 0, 3, 4, 3))],
        [producer],
        guarantee="exactly_once",
    )
    run.loop.run()

    assert [offsets for _, offsets, _ in producer.committed] == [{(IN, 0): 3}, {(IN, 0): 4}]
    assert run.consumer.commits == []  # offsets go in the transactions only
    assert [f["window_end_ts"] for f in run.forecasts()] == [2 * HOUR, 3 * HOUR]
    assert {s.transaction for s in producer.sent} == {1, 2}


def test_a_failed_transaction_is_recovered_in_place_and_the_batch_redone(
    engine: InferenceEngine,
) -> None:
    failing, fresh = FakeProducer(fail_commits=1), FakeProducer()
    records = hours("a", 0, 0, 4)
    run = assemble(
        engine,
        [Turn(assign=[0]), Turn(records=records), Turn(records=records)],  # redelivered
        [failing, fresh],
        guarantee="exactly_once",
    )
    run.loop.run()

    assert failing.aborted == [1] and failing.committed == []
    assert fresh.initialised  # a new producer fenced the failed one's transaction
    assert run.consumer.seeks == [(0, None)]  # rewound to the committed offset (none yet)
    assert run.changelog.reads == [[0], [0]]  # windows reloaded as of the last commit
    assert [offsets for _, offsets, _ in fresh.committed] == [{(IN, 0): 4}]
    assert [f["window_end_ts"] for f in run.forecasts()] == [2 * HOUR, 3 * HOUR]
    assert run.registry.get_sample_value("sf_kafka_recoveries_total", {"reason": "checkpoint"}) == 1
    assert run.registry.get_sample_value("sf_commit_failures_total") == 1


def test_a_failed_checkpoint_at_least_once_is_recovered_and_nothing_is_committed_twice(
    engine: InferenceEngine,
) -> None:
    failing = FakeProducer(fail_sends={OUT}, ack_on_send=True)
    fresh = FakeProducer(ack_on_send=True)
    records = hours("a", 0, 0, 4)
    run = assemble(
        engine, [Turn(assign=[0]), Turn(records=records), Turn(records=records)], [failing, fresh]
    )
    run.loop.run()

    assert run.consumer.commits == [{(IN, 0): 4}]  # only after the redelivered batch landed
    assert failing.closed
    assert run.registry.get_sample_value("sf_kafka_recoveries_total", {"reason": "checkpoint"}) == 1


def test_a_revoked_partition_loses_its_windows_and_is_not_committed(
    engine: InferenceEngine,
) -> None:
    run = assemble(
        engine,
        [
            Turn(assign=[0, 1]),
            Turn(records=hours("a", 0, 0, 3) + hours("b", 1, 0, 3)),
            Turn(revoke=[1], records=hours("a", 0, 3, 4, 3)),
        ],
        [FakeProducer()],
        commit_interval_ms=60_000,  # nothing committed before the revocation
    )
    run.loop.run()

    assert run.processor.store is not None
    assert "a" in run.processor.store and "b" not in run.processor.store
    assert run.consumer.committed_offsets == {(IN, 0): 4}  # partition 1: its new owner's
    assert run.registry.get_sample_value("sf_assigned_partitions") == 1
