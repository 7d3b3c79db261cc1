"""Both delivery guarantees against fake clients: what is sent, in which order, and what is
committed, also when a publish fails and when partitions are revoked."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from stream_forecaster.serving.batch import BatchOutput
from stream_forecaster.serving.checkpoint import PublishError
from stream_forecaster.serving.delivery import AtLeastOnce, ExactlyOnce, Sender
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.wire.records import OutputRecord
from tests.harness.fake_kafka import FakeConsumer, FakeProducer

IN, OUT, DLQ, CHANGELOG = "in", "out", "dlq", "in.windows"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def changelog(changed: Mapping[str, int]) -> list[OutputRecord]:
    """A snapshot record per changed key, on the changelog partition of its input's."""
    return [
        OutputRecord(CHANGELOG, k.encode(), b"snapshot", partition=p) for k, p in changed.items()
    ]


def batch(*keys_and_partitions: tuple[str, int], offset: int = 0) -> BatchOutput:
    """A processed batch: a forecast per key, one dead letter, its offsets."""
    out = BatchOutput()
    for key, partition in keys_and_partitions:
        out.forecasts.append(OutputRecord(OUT, key.encode(), b"{}", source_timestamp_ms=1))
        out.changed[key] = partition
        out.offsets[(IN, partition)] = offset + 1
    out.dead_letters.append(OutputRecord(DLQ, b"bad", b"{oops"))
    return out


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def at_least_once(
    producer: FakeProducer, registry: CollectorRegistry, clock: Clock
) -> tuple[AtLeastOnce, FakeConsumer]:
    consumer = FakeConsumer(IN, [], on_end=lambda: None)
    recorder = ServeRecorder(registry)
    delivery = AtLeastOnce(
        Sender(lambda: producer, DLQ, recorder, timeout_s=30),
        consumer,
        input_topic=IN,
        changelog=changelog,
        metrics=recorder,
        commit_interval_s=1.0,
        clock=clock,
    )
    delivery.restart()
    return delivery, consumer


def test_at_least_once_sends_at_once_and_commits_after_the_changelog_lands(
    registry: CollectorRegistry,
) -> None:
    producer, clock = FakeProducer(), Clock()
    delivery, consumer = at_least_once(producer, registry, clock)

    delivery.deliver(batch(("a", 0), ("b", 1), offset=9))
    assert [s.topic for s in producer.sent] == [OUT, OUT, DLQ]  # sent before any checkpoint
    delivery.checkpoint()
    assert consumer.commits == []  # not due yet

    clock.now = 1.0
    delivery.checkpoint()  # due: the output is not acknowledged, so no snapshot yet
    assert producer.topics(CHANGELOG) == [] and consumer.commits == []
    producer.acknowledge()
    delivery.checkpoint()  # output acknowledged: the snapshots go
    assert [(s.key, s.partition) for s in producer.topics(CHANGELOG)] == [(b"a", 0), (b"b", 1)]
    assert consumer.commits == []
    producer.acknowledge()
    delivery.checkpoint()  # snapshots acknowledged: the offsets are committed
    assert consumer.commits == [{(IN, 0): 10, (IN, 1): 10}]
    assert registry.get_sample_value("sf_commits_total") == 1
    assert registry.get_sample_value("sf_state_snapshots_written_total") == 2
    assert registry.get_sample_value("sf_forecasts_total") == 2  # counted when acknowledged


def test_at_least_once_a_failed_publish_fails_the_checkpoint_and_commits_nothing(
    registry: CollectorRegistry,
) -> None:
    producer, clock = FakeProducer(fail_sends={DLQ}), Clock()
    delivery, consumer = at_least_once(producer, registry, clock)
    delivery.deliver(batch(("a", 0)))
    clock.now = 1.0
    producer.acknowledge()
    with pytest.raises(PublishError, match="not published"):
        delivery.checkpoint()
    assert consumer.commits == []
    assert registry.get_sample_value("sf_dead_letter_failures_total") == 1

    delivery.restart()  # what recovery does: a new producer, nothing pending
    assert producer.closed and delivery.pending.offsets == {} and delivery.in_flight is None


def test_at_least_once_revoked_partitions_are_not_committed(registry: CollectorRegistry) -> None:
    producer, clock = FakeProducer(), Clock()
    delivery, consumer = at_least_once(producer, registry, clock)
    delivery.deliver(batch(("a", 0), ("b", 1)))
    clock.now = 1.0
    producer.acknowledge()
    delivery.checkpoint()  # in flight: the snapshots of a and b are sent
    assert len(producer.topics(CHANGELOG)) == 2
    delivery.deliver(batch(("c", 1), offset=5))  # pending for the next checkpoint

    delivery.before_revoke()  # the changelog in flight lands before partition 1 goes
    assert all(s.future.is_done for s in producer.sent)
    delivery.drop_partitions({1})
    delivery.finish()
    assert consumer.commits == [{(IN, 0): 1}]  # partition 1: neither checkpoint commits it
    assert [s.key for s in producer.topics(CHANGELOG)] == [b"a", b"b"]  # c's never went


def exactly_once(producer: FakeProducer, registry: CollectorRegistry) -> ExactlyOnce:
    recorder = ServeRecorder(registry)
    delivery = ExactlyOnce(
        Sender(lambda: producer, DLQ, recorder, timeout_s=30),
        FakeConsumer(IN, [], on_end=lambda: None),
        changelog,
        recorder,
    )
    delivery.restart()
    return delivery


def test_exactly_once_each_batch_is_one_transaction_with_its_offsets(
    registry: CollectorRegistry,
) -> None:
    producer = FakeProducer()
    delivery = exactly_once(producer, registry)
    assert producer.initialised  # init_transactions aborts what a predecessor left open

    delivery.deliver(batch(("a", 0), ("b", 1), offset=3))
    delivery.tombstones([OutputRecord(CHANGELOG, b"gone", None, partition=0)])
    delivery.tombstones([])  # nothing evicted: no transaction

    assert [s.topic for s in producer.sent if s.transaction == 1] == [
        OUT,
        OUT,
        DLQ,
        CHANGELOG,
        CHANGELOG,
    ]
    assert [s.key for s in producer.sent if s.transaction == 2] == [b"gone"]
    assert producer.committed == [
        (1, {(IN, 0): 4, (IN, 1): 4}, ("group", "member-1", 1)),  # fenced by the group generation
        (2, {}, None),
    ]
    assert registry.get_sample_value("sf_commits_total") == 2
    assert registry.get_sample_value("sf_state_snapshots_written_total") == 3


def test_exactly_once_a_failed_commit_is_aborted_and_raised(registry: CollectorRegistry) -> None:
    producer = FakeProducer(fail_commits=1)
    delivery = exactly_once(producer, registry)
    with pytest.raises(PublishError, match="aborted"):
        delivery.deliver(batch(("a", 0)))
    assert producer.aborted == [1] and producer.committed == []
    assert registry.get_sample_value("sf_commit_failures_total") == 1


def test_exactly_once_a_commit_whose_records_failed_is_not_taken_for_done(
    registry: CollectorRegistry,
) -> None:
    # kafka-python 3.0.12 can return from commit_transaction after the brokers aborted it
    # (an epoch bump mid-transaction): its records' futures then carry the failure.
    producer = FakeProducer(fail_sends={DLQ})
    delivery = exactly_once(producer, registry)
    with pytest.raises(PublishError, match="1 of the transaction's 3 records were not written"):
        delivery.deliver(batch(("a", 0)))
    assert registry.get_sample_value("sf_commit_failures_total") == 1
    assert registry.get_sample_value("sf_commits_total") == 0
