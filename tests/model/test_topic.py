"""The model topic on the real broker: publish, follow, and reject what must not be served."""

from __future__ import annotations

import queue
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.model.signing import Offer
from stream_forecaster.model.topic import (
    SIGNATURE_HEADER,
    VERSION_HEADER,
    ModelFollower,
    ensure_model_topic,
    publish_bundle,
)
from stream_forecaster.settings import Settings
from tests.harness.bundles import untrained_bundle
from tests.harness.signing import hmac_signature

pytestmark = pytest.mark.kafka

SECRET = "model-topic-test-secret"
WAIT_S = 30.0


@pytest.fixture(scope="module")
def bundles() -> list[ModelBundle]:
    return [untrained_bundle(seed=s, created_at=f"2026-03-0{s}T00:00:00Z") for s in (1, 2, 3)]


def settings_for(
    bootstrap: str, topic: str, *, name: str = "pm25", secret: str | None = None
) -> Settings:
    return Settings(
        kafka={"bootstrap_servers": bootstrap},
        topics={"models": topic},
        model={"name": name, "signing_secret": secret},
        state={"retry_backoff_max_s": 1},
    )


class Follower:
    """A started ModelFollower whose callbacks land in queues."""

    def __init__(self, settings: Settings) -> None:
        self.bundles: queue.Queue[ModelBundle] = queue.Queue()
        self.rejects: queue.Queue[tuple[str, str]] = queue.Queue()
        self.threads: set[str] = set()

        def on_bundle(offer: Offer) -> None:
            import threading

            self.threads.add(threading.current_thread().name)
            self.bundles.put(offer.bundle)

        self.follower = ModelFollower(
            settings, on_bundle, lambda reason, detail: self.rejects.put((reason, detail))
        ).start()

    def next_bundle(self) -> ModelBundle:
        return self.bundles.get(timeout=WAIT_S)

    def next_reject(self) -> tuple[str, str]:
        return self.rejects.get(timeout=WAIT_S)

    def nothing_more(self, wait_s: float = 1.0) -> bool:
        time.sleep(wait_s)
        return self.bundles.empty() and self.rejects.empty()


@pytest.fixture
def follow() -> Iterator[Callable[[Settings], Follower]]:
    started: list[Follower] = []

    def make(settings: Settings) -> Follower:
        follower = Follower(settings)
        started.append(follower)
        return follower

    yield make
    for follower in started:
        follower.follower.stop()


def same(a: ModelBundle, b: ModelBundle) -> bool:
    return a.manifest == b.manifest and all(
        np.array_equal(x, y) for x, y in zip(a.weights, b.weights, strict=True)
    )


def produce_raw(
    bootstrap: str, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]]
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    producer.send(topic, key=key, value=value, headers=headers).get(timeout=WAIT_S)
    producer.close(timeout=5)


def test_a_follower_serves_the_newest_bundle_for_its_name_then_each_new_one(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    bundles: list[ModelBundle],
    follow: Callable[[Settings], Follower],
) -> None:
    topic = new_topic(1, **{"cleanup.policy": "compact"})
    settings = settings_for(kafka_bootstrap, topic)
    other = settings_for(kafka_bootstrap, topic, name="another-model")
    publish_bundle(settings, bundles[0], None)
    publish_bundle(settings, bundles[1], None)
    publish_bundle(other, bundles[2], None)  # for another model name: ignored

    follower = follow(settings)
    first = follower.next_bundle()
    assert first.version == bundles[1].version  # the newest for its name, only that one
    assert same(first, bundles[1])
    assert follower.follower.wait_caught_up(WAIT_S)
    assert follower.threads == {"model-follower"}  # on_bundle runs on the follower's thread
    assert follower.nothing_more()

    publish_bundle(settings, bundles[2], None)  # published after start: picked up
    second = follower.next_bundle()
    assert same(second, bundles[2])
    publish_bundle(other, bundles[0], None)
    assert follower.nothing_more()

    started = time.monotonic()
    follower.follower.stop()
    assert time.monotonic() - started < 3  # prompt
    assert not follower.follower._thread.is_alive()


def test_with_a_secret_unsigned_forged_and_damaged_bundles_are_rejected(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    bundles: list[ModelBundle],
    follow: Callable[[Settings], Follower],
) -> None:
    topic = new_topic(1, **{"cleanup.policy": "compact"})
    settings = settings_for(kafka_bootstrap, topic, secret=SECRET)
    follower = follow(settings)
    assert follower.follower.wait_caught_up(WAIT_S)  # an empty topic: nothing to serve yet

    publish_bundle(settings, bundles[0], None)
    reason, detail = follower.next_reject()
    assert reason == "unsigned"
    assert bundles[0].version in detail and "SF_MODEL__SIGNING_SECRET" in detail

    publish_bundle(
        settings, bundles[1], hmac_signature(bundles[1], "the attacker's secret", name="pm25")
    )
    reason, detail = follower.next_reject()
    assert reason == "forged"
    assert bundles[1].version in detail and "does not cover" in detail

    # Signed with the right secret, but the bytes are damaged: the checksum catches it.
    damaged = bytearray(bundles[2].to_bytes())
    damaged[-20] ^= 0xFF
    produce_raw(
        kafka_bootstrap,
        topic,
        b"pm25",
        bytes(damaged),
        [
            (VERSION_HEADER, bundles[2].version.encode()),
            (SIGNATURE_HEADER, hmac_signature(bundles[2], SECRET, name="pm25").encode()),
        ],
    )
    reason, detail = follower.next_reject()
    assert reason == "damaged"
    assert "checksum" in detail

    # A valid bundle whose version header lies about it is damaged too.
    value = bundles[2].to_bytes()
    produce_raw(
        kafka_bootstrap,
        topic,
        b"pm25",
        value,
        [
            (VERSION_HEADER, b"20990101T000000Z-00000000"),
            (SIGNATURE_HEADER, hmac_signature(bundles[2], SECRET, name="pm25").encode()),
        ],
    )
    assert follower.next_reject()[0] == "damaged"
    assert follower.bundles.empty()

    publish_bundle(settings, bundles[2], hmac_signature(bundles[2], SECRET, name="pm25"))
    assert same(follower.next_bundle(), bundles[2])
    assert follower.rejects.empty()


def test_a_rejected_newest_bundle_at_start_up_serves_nothing(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    bundles: list[ModelBundle],
    follow: Callable[[Settings], Follower],
) -> None:
    topic = new_topic(1, **{"cleanup.policy": "compact"})
    signed = settings_for(kafka_bootstrap, topic, secret=SECRET)
    publish_bundle(signed, bundles[0], hmac_signature(bundles[0], SECRET, name="pm25"))
    publish_bundle(signed, bundles[1], None)  # the newest is unsigned
    follower = follow(signed)
    assert follower.next_reject()[0] == "unsigned"
    assert follower.follower.wait_caught_up(WAIT_S)
    assert follower.nothing_more()  # no fallback to an older bundle


def test_a_follower_waits_for_the_topic_and_publish_creates_it_compacted(
    kafka_bootstrap: str,
    bundles: list[ModelBundle],
    follow: Callable[[Settings], Follower],
) -> None:
    topic = f"models-not-yet-{uuid.uuid4().hex[:10]}"
    settings = settings_for(kafka_bootstrap, topic)
    follower = follow(settings)
    time.sleep(1.5)
    assert not follower.follower.caught_up  # waiting for the topic, not failing
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert topic not in admin.list_topics()  # and not auto-creating it

        publish_bundle(settings, bundles[0], None)
        assert same(follower.next_bundle(), bundles[0])

        described = admin.describe_topics([topic])
        assert len(described[0]["partitions"]) == 1
        configs: Any = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        text = repr(configs)
        assert "'cleanup.policy'" in text and "'compact'" in text
        assert str(16 * 1024 * 1024 + 64 * 1024) in text
    finally:
        admin.close()
    assert ensure_model_topic(settings) == topic  # idempotent


def test_a_follower_survives_an_unreachable_broker(
    bundles: list[ModelBundle], follow: Callable[[Settings], Follower]
) -> None:
    from tests.harness.kafka_broker import free_port

    settings = settings_for(f"127.0.0.1:{free_port()}", "models-nowhere")
    follower = follow(settings)
    time.sleep(2)
    assert follower.follower._thread.is_alive()
    assert not follower.follower.caught_up
    started = time.monotonic()
    follower.follower.stop()
    assert time.monotonic() - started < 5
