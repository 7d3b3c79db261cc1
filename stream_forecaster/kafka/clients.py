"""Kafka clients configured from the settings: the input consumer and the output producer."""

from __future__ import annotations

import socket
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from stream_forecaster.settings.config import Settings


def transactional_id(settings: Settings) -> str:
    """The instance's stable transactional id: configured, or ``<group_id>-<hostname>``."""
    p = settings.processing
    return p.transactional_id or f"{p.group_id}-{socket.gethostname()}"


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A group consumer of the input topic (not yet subscribed); auto-commit off."""
    p = settings.processing
    config: dict[str, Any] = {
        **settings.kafka.client_config(),
        "group_id": p.group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
        "max_poll_records": p.max_batch,
        "fetch_max_wait_ms": max(1, p.max_wait_ms),
        "max_partition_fetch_bytes": max(1024 * 1024, p.max_record_bytes * 4),
        # Also the rebalance timeout: how long a rebalance may wait for a member that does
        # not rejoin. A batch takes well under a second, so 30 s is ample, and a stuck
        # rebalance cannot hold the group for the default 5 minutes.
        "max_poll_interval_ms": 30_000,
        # A crashed member's partitions move to the others after this long.
        "session_timeout_ms": p.session_timeout_ms,
        "heartbeat_interval_ms": max(1000, p.session_timeout_ms // 3),
    }
    config.update(overrides)
    return KafkaConsumer(**config)


def make_producer(settings: Settings, **overrides: Any) -> KafkaProducer:
    """The producer for forecasts and dead letters.

    at_least_once: idempotent, ``acks=all``. exactly_once: transactional with the instance's
    :func:`transactional_id` (``init_transactions`` is called by the service).
    """
    config: dict[str, Any] = {
        **settings.kafka.client_config(),
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 2,
        "batch_size": 64 * 1024,
        "max_request_size": max(1024 * 1024, settings.processing.max_record_bytes * 2),
    }
    if settings.processing.guarantee == "exactly_once":
        config["transactional_id"] = transactional_id(settings)
        # A transaction spans one batch (well under a second). A crashed instance's open
        # transaction blocks read_committed readers and restores until it times out, so
        # keep this short.
        config["transaction_timeout_ms"] = 10_000
    config.update(overrides)
    return KafkaProducer(**config)
