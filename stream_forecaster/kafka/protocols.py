"""What serve needs of its Kafka clients, as typed Protocols.

kafka-python's ``KafkaConsumer`` and ``KafkaProducer`` fit them as they are (they are made
in :mod:`stream_forecaster.kafka.clients`); the serve loop and both delivery guarantees are
written against these Protocols only, so that the unit tests run them with fakes and a
second transport can stand behind the same seam. Partitions and offsets are kafka-python's
``TopicPartition`` and ``OffsetAndMetadata`` (named tuples).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from stream_forecaster.wire.records import InputRecord

#: ``TopicPartition(topic, partition)`` (a named tuple).
Partition = Any
#: ``{TopicPartition: OffsetAndMetadata}``: the next offset to read, per partition.
Offsets = Mapping[Any, Any]


class SendFuture(Protocol):
    """The result of one ``send``: done once the brokers acknowledged the record or it
    failed."""

    @property
    def is_done(self) -> bool: ...
    @property
    def exception(self) -> BaseException | None: ...
    def failed(self) -> bool: ...
    def add_callback(self, f: Callable[..., Any], *args: Any) -> Any: ...
    def add_errback(self, f: Callable[..., Any], *args: Any) -> Any: ...


class Producer(Protocol):
    """Sends records; with a transactional id, in transactions."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> SendFuture: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...
    def init_transactions(self) -> None: ...
    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(
        self, offsets: Offsets, consumer_group_metadata: Any
    ) -> None: ...
    def commit_transaction(self) -> None: ...
    def abort_transaction(self) -> None: ...


class RebalanceListener(Protocol):
    """Told of partitions revoked from and assigned to this member (on the client's
    thread)."""

    def on_partitions_revoked(self, revoked: Collection[Partition]) -> None: ...
    def on_partitions_assigned(self, assigned: Collection[Partition]) -> None: ...


class Consumer(Protocol):
    """A member of the input topic's consumer group."""

    def subscribe(self, topics: Sequence[str], listener: RebalanceListener) -> None: ...
    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[Partition, Sequence[InputRecord]]: ...
    def partitions_for_topic(self, topic: str) -> set[int] | None: ...
    def position(self, partition: Partition, timeout_ms: int | None = None) -> int | None: ...
    def committed(self, partition: Partition, timeout_ms: int | None = None) -> int | None: ...
    def seek(self, partition: Partition, offset: int) -> None: ...
    def seek_to_beginning(self, *partitions: Partition) -> None: ...
    def commit(self, offsets: Offsets, timeout_ms: int | None = None) -> None: ...
    def group_metadata(self) -> Any: ...
    def close(self, autocommit: bool = True, timeout_ms: int | None = None) -> None: ...


def names(partitions: Collection[Partition]) -> str:
    """``topic[0], topic[1]`` (sorted), or ``none``: partitions for a log line."""
    return ", ".join(sorted(f"{tp.topic}[{tp.partition}]" for tp in partitions)) or "none"
