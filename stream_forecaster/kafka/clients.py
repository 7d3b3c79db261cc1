"""Kafka clients configured from the settings: their common options (the cluster, TLS and
SASL), the input consumer, the output producer, and whether a broker is reachable."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.coordinator.consumer import ConsumerCoordinator
from pydantic import SecretStr

from stream_forecaster.settings import KafkaSettings, Settings


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's KafkaProducer/KafkaConsumer/KafkaAdminClient:
    the cluster's addresses, client id, timeouts and TLS/SASL settings."""
    config: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers.split(","),
        "client_id": kafka.client_id,
        "security_protocol": kafka.security_protocol,
        "request_timeout_ms": kafka.request_timeout_ms,
    }
    optional: dict[str, Any] = {
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_plain_username": kafka.sasl_plain_username,
        "sasl_plain_password": _reveal(kafka.sasl_plain_password),
        "ssl_cafile": _as_str(kafka.ssl_cafile),
        "ssl_certfile": _as_str(kafka.ssl_certfile),
        "ssl_keyfile": _as_str(kafka.ssl_keyfile),
        "ssl_password": _reveal(kafka.ssl_password),
    }
    config.update({k: v for k, v in optional.items() if v is not None})
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        config["ssl_check_hostname"] = kafka.ssl_check_hostname
    return config


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _as_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def transactional_id(settings: Settings) -> str:
    """The instance's stable transactional id: configured, or ``<group_id>-<hostname>``."""
    p = settings.processing
    return p.transactional_id or f"{p.group_id}-{socket.gethostname()}"


def _keep_metadata_rejoins_requested() -> None:
    """kafka-python (3.0.12) forgets a rebalance that a metadata change started once its
    JoinGroup/SyncGroup outlives the poll that sent it; make it remember, as the Java client
    does (KAFKA-9815).

    The group leader rejoins when the partitions it assigned differ from the latest metadata
    (``ConsumerCoordinator.need_rejoin``), without setting ``rejoin_needed``. Its JoinGroup
    then takes a new metadata snapshot, so ``need_rejoin()`` turns False while the join is
    still in flight: when ``poll(timeout_ms=...)`` gives up before the SyncGroup answer, the
    next polls skip the join, the assignment is never applied, heartbeats stay off, and the
    member holds no partition until the broker expires it and for good after that.
    """
    original = ConsumerCoordinator.need_rejoin
    if getattr(original, "_sf_keeps_rejoin", False):
        return

    def need_rejoin(self: ConsumerCoordinator) -> bool:
        needed: bool = original(self)
        if needed:
            self.request_rejoin()  # cleared only once a join completes and is applied
        return needed

    need_rejoin._sf_keeps_rejoin = True  # type: ignore[attr-defined]
    ConsumerCoordinator.need_rejoin = need_rejoin


def make_consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A group consumer of the input topic (not yet subscribed); auto-commit off."""
    _keep_metadata_rejoins_requested()
    p = settings.processing
    config: dict[str, Any] = {
        **client_config(settings.kafka),
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
        **client_config(settings.kafka),
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


def reachable(servers: Sequence[str]) -> bool:
    """Whether a bootstrap server accepts connections (kafka-python 3.0 leaks a thread for
    each client that cannot bootstrap: a down broker must not cost one per retry)."""
    for server in servers:
        host, _, port = server.rpartition(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1.0):
            return True
    return False
