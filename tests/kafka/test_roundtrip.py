"""The real broker: a produce/consume round trip with kafka-python."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

pytestmark = pytest.mark.kafka


def test_produce_consume_round_trip(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=3)
    sent = [
        (f"sensor-{i % 3}".encode(), f'{{"ts": {i}, "values": {{"t": {i}.5}}}}'.encode())
        for i in range(30)
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    for key, value in sent:
        producer.send(topic, key=key, value=value, headers=[("origin", b"test")])
    producer.flush(timeout=30)
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"roundtrip-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received: list[ConsumerRecord] = []
    deadline = time.monotonic() + 60
    while len(received) < len(sent) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            received.extend(records)
    consumer.commit()
    committed = {
        tp.partition: consumer.committed(tp) for tp in (TopicPartition(topic, p) for p in range(3))
    }
    consumer.close()

    assert sorted((r.key, r.value) for r in received) == sorted(sent)
    assert all(r.headers == [("origin", b"test")] for r in received)
    # Same key, same partition, in order.
    by_key: dict[bytes, set[int]] = {}
    for r in received:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    for key in by_key:
        values = [r.value for r in received if r.key == key]
        assert values == [v for k, v in sent if k == key]
    assert sum(c or 0 for c in committed.values()) == len(sent)
