"""The checkpoint's order, driven without waiting: pure logic, with fake send futures."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from stream_forecaster.serving.batch import BatchOutput
from stream_forecaster.serving.checkpoint import CheckpointInFlight, PendingCheckpoint, PublishError
from stream_forecaster.wire.records import OutputRecord


@dataclass
class FakeFuture:
    """A kafka-python send future: done or not, failed or not."""

    is_done: bool = False
    exception: Exception | None = None

    def failed(self) -> bool:
        return self.exception is not None

    def ack(self) -> None:
        self.is_done = True


@dataclass
class FakeProducer:
    sent: list[OutputRecord] = field(default_factory=list)
    futures: list[FakeFuture] = field(default_factory=list)

    def send(self, record: OutputRecord) -> FakeFuture:
        self.sent.append(record)
        self.futures.append(FakeFuture())
        return self.futures[-1]

    def flush(self) -> None:
        for future in self.futures:
            future.ack()


def snapshot(key: str, partition: int) -> OutputRecord:
    return OutputRecord("windows", key.encode(), b"state", partition=partition)


def pending_with(futures: list[FakeFuture]) -> PendingCheckpoint:
    pending = PendingCheckpoint()
    out = BatchOutput(offsets={("in", 0): 10, ("in", 1): 7}, changed={"a": 0, "b": 1})
    pending.add(out, list(futures), now=0.0)
    return pending


def test_no_snapshot_is_sent_before_every_forecast_is_acknowledged() -> None:
    forecasts = [FakeFuture(), FakeFuture()]
    producer = FakeProducer()
    changelog = [snapshot(k, p) for k, p in (("a", 0), ("b", 1), ("c", 0))]
    checkpoint = CheckpointInFlight(pending_with(forecasts), changelog, started=0.0)

    forecasts[1].ack()  # out of order: the first is still in flight
    assert not checkpoint.advance(producer.send, slice_size=2)
    assert producer.sent == []
    forecasts[0].ack()
    assert not checkpoint.advance(producer.send, slice_size=2)  # a slice of 2 ...
    assert [r.key for r in producer.sent] == [b"a", b"b"]
    assert not checkpoint.advance(producer.send, slice_size=2)  # ... then the rest
    assert [r.key for r in producer.sent] == [b"a", b"b", b"c"]
    assert not checkpoint.advance(producer.send, slice_size=2)  # not acknowledged yet
    producer.flush()
    assert checkpoint.advance(producer.send, slice_size=2)  # only the commit is left
    assert checkpoint.offsets == {("in", 0): 10, ("in", 1): 7}
    assert checkpoint.n_changelog == 3


def test_a_checkpoint_without_changelog_is_done_once_its_output_is_acknowledged() -> None:
    forecast = FakeFuture()
    checkpoint = CheckpointInFlight(pending_with([forecast]), [], started=0.0)
    assert not checkpoint.advance(FakeProducer().send, slice_size=8)
    forecast.ack()
    assert checkpoint.advance(FakeProducer().send, slice_size=8)


@pytest.mark.parametrize("stage", ["forecast", "changelog"])
def test_a_record_not_published_fails_the_checkpoint(stage: str) -> None:
    forecast = FakeFuture()
    producer = FakeProducer()
    checkpoint = CheckpointInFlight(pending_with([forecast]), [snapshot("a", 0)], started=0.0)
    if stage == "forecast":
        forecast.is_done, forecast.exception = True, TimeoutError("broker down")
    else:
        forecast.ack()
        checkpoint.advance(producer.send, slice_size=8)
        producer.futures[0].is_done = True
        producer.futures[0].exception = TimeoutError("broker down")
    with pytest.raises(PublishError, match=r"not published: TimeoutError\('broker down'\)"):
        checkpoint.advance(producer.send, slice_size=8)


def test_finish_waits_through_every_stage() -> None:
    producer = FakeProducer()
    forecasts = [producer.send(OutputRecord("out", b"a", b"1"))]
    changelog = [snapshot("a", 0), snapshot("b", 1)]
    checkpoint = CheckpointInFlight(pending_with(forecasts), changelog, started=0.0)
    checkpoint.finish(producer.send, producer.flush)
    assert [r.topic for r in producer.sent] == ["out", "windows", "windows"]
    assert all(f.is_done for f in producer.futures)


def test_finish_says_so_when_a_flush_does_not_acknowledge() -> None:
    checkpoint = CheckpointInFlight(pending_with([FakeFuture()]), [], started=0.0)
    with pytest.raises(PublishError, match="not acknowledged after a flush"):
        checkpoint.finish(FakeProducer().send, lambda: None)


def test_revoked_partitions_are_neither_committed_nor_snapshotted() -> None:
    producer = FakeProducer()
    changelog = [snapshot("a", 0), snapshot("b", 1)]
    checkpoint = CheckpointInFlight(pending_with([]), changelog, started=0.0)
    checkpoint.drop_partitions("in", {1})
    assert checkpoint.offsets == {("in", 0): 10}
    checkpoint.finish(producer.send, producer.flush)
    assert [r.key for r in producer.sent] == [b"a"]


def test_pending_checkpoint_is_due_an_interval_after_its_first_batch() -> None:
    pending = PendingCheckpoint()
    assert not pending and not pending.due(100.0, 1.0)
    pending.add(BatchOutput(offsets={("in", 0): 1}), [], now=5.0)
    assert pending and not pending.due(5.9, 1.0) and pending.due(6.0, 1.0)
