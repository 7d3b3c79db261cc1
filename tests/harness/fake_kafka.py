"""Fake Kafka clients for the unit tests of the serve loop and the delivery guarantees: they
fit the Protocols of stream_forecaster.kafka.protocols and record what was asked of them.
The real broker is in the integration tests."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import KafkaError

from stream_forecaster.kafka.protocols import Offsets, Partition, RebalanceListener
from stream_forecaster.wire.records import InputRecord, Record


class FakeFuture:
    """A send's result, completed by the test (or by :meth:`FakeProducer.flush`)."""

    def __init__(self) -> None:
        self.is_done = False
        self.exception: BaseException | None = None
        self._callbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._errbacks: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def failed(self) -> bool:
        return self.is_done and self.exception is not None

    def add_callback(self, f: Callable[..., Any], *args: Any) -> FakeFuture:
        self._callbacks.append((f, args))
        return self

    def add_errback(self, f: Callable[..., Any], *args: Any) -> FakeFuture:
        self._errbacks.append((f, args))
        return self

    def succeed(self) -> None:
        self.is_done = True
        for f, args in self._callbacks:
            f(*args, "metadata")

    def fail(self, exc: BaseException) -> None:
        self.is_done, self.exception = True, exc
        for f, args in self._errbacks:
            f(*args, exc)


@dataclass
class Sent:
    """One record sent."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    future: FakeFuture
    transaction: int | None  # the transaction it was sent in, if any


class FakeProducer:
    """Records sends and transactions; ``flush`` acknowledges everything sent.

    Args:
        fail_commits: how many ``commit_transaction`` calls raise before they succeed.
        fail_sends: topics whose records fail when acknowledged.
        ack_on_send: acknowledge each record at once (as a broker would, soon after), not
            only on ``flush``.
    """

    def __init__(
        self, fail_commits: int = 0, fail_sends: Collection[str] = (), ack_on_send: bool = False
    ) -> None:
        self.ack_on_send = ack_on_send
        self.sent: list[Sent] = []
        self.fail_commits = fail_commits
        self.fail_sends = set(fail_sends)
        self.initialised = False
        self.closed = False
        self.transaction: int | None = None
        self.committed: list[tuple[int, dict[tuple[str, int], int], Any]] = []
        self.aborted: list[int] = []
        self._transactions = 0
        self._offsets: dict[tuple[str, int], int] = {}
        self._group: Any = None

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> FakeFuture:
        future = FakeFuture()
        self.sent.append(Sent(topic, key, value, partition, future, self.transaction))
        if self.ack_on_send and self.transaction is None:
            self.acknowledge()
        return future

    def acknowledge(self) -> None:
        """Complete every send not completed yet."""
        for sent in self.sent:
            if not sent.future.is_done:
                if sent.topic in self.fail_sends:
                    sent.future.fail(KafkaError(f"{sent.topic} refused"))
                else:
                    sent.future.succeed()

    def flush(self, timeout: float | None = None) -> None:
        self.acknowledge()

    def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def init_transactions(self) -> None:
        self.initialised = True

    def begin_transaction(self) -> None:
        assert self.initialised and self.transaction is None
        self._transactions += 1
        self.transaction = self._transactions

    def send_offsets_to_transaction(self, offsets: Offsets, consumer_group_metadata: Any) -> None:
        assert self.transaction is not None
        self._offsets = {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}
        self._group = consumer_group_metadata

    def commit_transaction(self) -> None:
        assert self.transaction is not None
        if self.fail_commits:
            self.fail_commits -= 1
            raise KafkaError("the transaction's coordinator is gone")
        self.acknowledge()
        self.committed.append((self.transaction, self._offsets, self._group))
        self.transaction, self._offsets, self._group = None, {}, None

    def abort_transaction(self) -> None:
        assert self.transaction is not None
        self.aborted.append(self.transaction)
        self.transaction, self._offsets, self._group = None, {}, None

    def topics(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]


@dataclass
class Turn:
    """What one poll of a :class:`FakeConsumer` does: assign or revoke partitions first
    (through the rebalance listener), then return ``records``."""

    records: list[Record] = field(default_factory=list)
    assign: list[int] = field(default_factory=list)
    revoke: list[int] = field(default_factory=list)


class FakeConsumer:
    """A group member whose polls follow a script of :class:`Turn`; ``stop`` is set when the
    script ends. Commits, seeks and group metadata are recorded.

    Args:
        topic: the input topic.
        turns: the script.
        on_end: called once the script is over (e.g. to set the loop's stop event).
    """

    def __init__(self, topic: str, turns: Sequence[Turn], on_end: Callable[[], None]) -> None:
        self.topic = topic
        self.turns = deque(turns)
        self.on_end = on_end
        self.listener: RebalanceListener | None = None
        self.commits: list[dict[tuple[str, int], int]] = []
        self.committed_offsets: dict[tuple[str, int], int] = {}
        self.seeks: list[tuple[int, int | None]] = []
        self.closed = False

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None:
        self.listener = listener

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Partition, Sequence[InputRecord]]:
        if not self.turns:
            self.on_end()
            return {}
        turn = self.turns.popleft()
        assert self.listener is not None, "subscribe first"
        if turn.revoke:
            self.listener.on_partitions_revoked([self._tp(p) for p in turn.revoke])
        if turn.assign:
            self.listener.on_partitions_assigned([self._tp(p) for p in turn.assign])
        by_partition: dict[Partition, list[InputRecord]] = {}
        for record in turn.records:
            by_partition.setdefault(self._tp(record.partition), []).append(record)
        return by_partition

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {0, 1}

    def topics(self) -> set[str]:
        return {self.topic}

    def position(self, partition: Partition, timeout_ms: int | None = None) -> int | None:
        return 0

    def committed(self, partition: Partition, timeout_ms: int | None = None) -> int | None:
        return self.committed_offsets.get((partition.topic, partition.partition))

    def seek(self, partition: Partition, offset: int) -> None:
        self.seeks.append((partition.partition, offset))

    def seek_to_beginning(self, *partitions: Partition) -> None:
        self.seeks.extend((tp.partition, None) for tp in partitions)

    def commit(self, offsets: Offsets, timeout_ms: int | None = None) -> None:
        plain = {(tp.topic, tp.partition): om.offset for tp, om in offsets.items()}
        self.commits.append(plain)
        self.committed_offsets.update(plain)

    def group_metadata(self) -> Any:
        return ("group", "member-1", 1)

    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None:
        self.closed = True

    def _tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self.topic, partition)
