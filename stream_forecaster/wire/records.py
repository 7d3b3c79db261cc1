"""The shapes of Kafka records as the pipeline sees them, independent of the client."""

from __future__ import annotations

from typing import NamedTuple, Protocol


class InputRecord(Protocol):
    """What the pipeline reads of a consumed record (kafka-python's ConsumerRecord fits)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class Record(NamedTuple):
    """A consumed record held in memory (it fits :class:`InputRecord`): for replays, the
    tests and the benchmarks.

    Args:
        topic: the topic it came from.
        partition: its partition.
        offset: its offset.
        timestamp: its Kafka timestamp, epoch milliseconds.
        key: the record key bytes.
        value: the record value bytes.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


class OutputRecord(NamedTuple):
    """A record to produce (a named tuple: one is made per forecast, and a tuple costs a
    third of a frozen dataclass to make).

    Args:
        topic: where it goes.
        key: record key bytes.
        value: record value bytes.
        headers: Kafka headers, or None.
        source_timestamp_ms: the Kafka timestamp of the input record it answers, for the
            end-to-end latency metric.
        partition: the partition to write to; ``None`` lets the producer's partitioner
            choose from the key.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None = None
    source_timestamp_ms: int | None = None
    partition: int | None = None
