"""The window changelog on the real broker: what a restore reads, and what it waits for."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import KafkaProducer

from stream_forecaster.settings import Settings
from stream_forecaster.state.changelog import (
    ChangelogError,
    ChangelogReader,
    ensure_changelog_topic,
)

pytestmark = pytest.mark.kafka


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": kafka_bootstrap},
        processing={"group_id": f"cl-{uuid.uuid4().hex[:8]}"},
        state={"restore_timeout_s": 30},
    )


@pytest.fixture
def transactional(kafka_bootstrap: str) -> Iterator[Callable[[], KafkaProducer]]:
    made: list[KafkaProducer] = []

    def make() -> KafkaProducer:
        producer = KafkaProducer(
            bootstrap_servers=kafka_bootstrap, transactional_id=f"cl-{uuid.uuid4().hex}"
        )
        producer.init_transactions()
        made.append(producer)
        return producer

    yield make
    for producer in made:
        producer.close(timeout=2)


def test_restore_reads_the_newest_committed_snapshot_per_key(
    settings: Settings, transactional: Callable[[], KafkaProducer]
) -> None:
    topic = ensure_changelog_topic(settings, 2)
    producer = transactional()
    producer.begin_transaction()
    for key, value, partition in [
        (b"a", b"a-old", 0),
        (b"b", b"b-1", 0),
        (b"c", b"c-1", 1),
        (b"a", b"a-new", 0),
        (b"b", None, 0),  # a tombstone: b was evicted
    ]:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send(topic, key=b"a", value=b"aborted", partition=0)
    producer.send(topic, key=b"d", value=b"aborted", partition=1)
    producer.flush()
    producer.abort_transaction()

    reader = ChangelogReader(settings)
    try:
        assert reader.read({0, 1}) == {0: {"a": b"a-new"}, 1: {"c": b"c-1"}}
        assert reader.read({1}) == {1: {"c": b"c-1"}}  # the reader can be used again
    finally:
        reader.close()


def test_restore_waits_for_an_open_transaction_to_end(
    settings: Settings, transactional: Callable[[], KafkaProducer]
) -> None:
    topic = ensure_changelog_topic(settings, 1)
    producer = transactional()
    producer.begin_transaction()
    producer.send(topic, key=b"k", value=b"pending", partition=0)
    producer.flush()
    reader = ChangelogReader(settings)
    result: dict[int, dict[str, bytes]] = {}
    restore = threading.Thread(target=lambda: result.update(reader.read({0})))
    try:
        restore.start()
        restore.join(timeout=3)
        assert restore.is_alive()  # still waiting: the transaction is open
        producer.commit_transaction()
        restore.join(timeout=30)
        assert not restore.is_alive()
        assert result == {0: {"k": b"pending"}}
    finally:
        restore.join(timeout=30)
        reader.close()


def test_a_restore_waiting_on_an_open_transaction_ends_when_asked_to_stop(
    settings: Settings, transactional: Callable[[], KafkaProducer]
) -> None:
    topic = ensure_changelog_topic(settings, 1)
    producer = transactional()
    producer.begin_transaction()
    producer.send(topic, key=b"k", value=b"pending", partition=0)
    producer.flush()
    stop = threading.Event()
    reader = ChangelogReader(settings, stop=stop)
    failures: list[Exception] = []

    def restore() -> None:
        try:
            reader.read({0})
        except ChangelogError as exc:
            failures.append(exc)

    thread = threading.Thread(target=restore)
    try:
        thread.start()
        thread.join(timeout=3)
        assert thread.is_alive()  # waiting: the transaction is open
        stop.set()  # SIGTERM: serve must not wait for the restore
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert "interrupted" in str(failures[0])
    finally:
        producer.abort_transaction()
        thread.join(timeout=30)
        reader.close()


def test_a_changelog_with_another_partition_count_is_refused(settings: Settings) -> None:
    ensure_changelog_topic(settings, 2)
    with pytest.raises(ChangelogError, match=r"has 2 partitions, expected 3 .*CHANGELOG_TOPIC"):
        ensure_changelog_topic(settings, 3)
