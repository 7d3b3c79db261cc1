"""Creating topics: the one place that does it, for the changelog, the model topic and the
demo's topics.

A topic is created with its partition count and configuration when missing (never left to
the broker's auto-creation, which would neither compact nor size it), and its partition
count is returned as found, so that callers can check it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from stream_forecaster.kafka.clients import client_config
from stream_forecaster.kafka.errors import ClusterError
from stream_forecaster.settings import KafkaSettings

log = logging.getLogger(__name__)

#: How long a topic that exists but describes with no partitions is asked about again.
_METADATA_WAIT_S = 10.0


class TopicError(ClusterError):
    """A topic could not be created or described: the brokers cannot be reached, or refuse."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the service wants it.

    Args:
        name: the topic's name.
        partitions: its partition count, when it is created.
        config: topic configuration, e.g. ``{"cleanup.policy": "compact"}``.
        purpose: what it is for, in the log line that reports its creation.
    """

    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    purpose: str = "topic"


def ensure_topic(kafka: KafkaSettings, spec: TopicSpec, **admin_overrides: Any) -> int:
    """Create ``spec`` when missing; returns the partition count the topic has.

    Args:
        kafka: the cluster.
        spec: the topic.
        admin_overrides: more kafka-python admin client options (a bootstrap timeout).

    Raises:
        TopicError: the brokers cannot be reached, or refuse to create or describe it.
    """
    try:
        admin = KafkaAdminClient(**client_config(kafka), **admin_overrides)
    except KafkaError as exc:
        raise TopicError(
            f"cannot reach the Kafka brokers at {kafka.bootstrap_servers} "
            f"(SF_KAFKA__BOOTSTRAP_SERVERS): {exc!r}"
        ) from None
    try:
        new = NewTopic(
            spec.name,
            num_partitions=spec.partitions,
            replication_factor=-1,  # the broker's default.replication.factor
            topic_configs=dict(spec.config),
        )
        try:
            admin.create_topics([new])
            log.info("created %s %s (%d partitions)", spec.purpose, spec.name, spec.partitions)
            return spec.partitions  # what we asked for; its metadata may lag a moment
        except TopicAlreadyExistsError:
            pass
        return _partition_count(admin, spec.name)
    except KafkaError as exc:
        raise TopicError(f"cannot create the {spec.purpose} {spec.name}: {exc!r}") from None
    finally:
        admin.close()


def _partition_count(admin: Any, name: str) -> int:
    """The topic's partition count; a topic just created by someone else can describe with
    none for a moment (metadata propagating), so that is asked again for a few seconds."""
    deadline = time.monotonic() + _METADATA_WAIT_S
    while True:
        partitions = len(admin.describe_topics([name])[0].get("partitions") or [])
        if partitions or time.monotonic() >= deadline:
            return partitions
        time.sleep(0.2)
