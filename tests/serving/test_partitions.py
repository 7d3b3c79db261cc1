"""The rebalance listener: bookkeeping only (it runs on kafka-python's IO thread)."""

from __future__ import annotations

from kafka import TopicPartition
from prometheus_client import CollectorRegistry

from stream_forecaster.serving.partitions import Assignment
from stream_forecaster.serving.recorder import ServeRecorder


def test_assign_and_revoke_track_partitions_and_lag_series() -> None:
    registry = CollectorRegistry()
    recorder = ServeRecorder(registry)
    listener = Assignment(recorder)
    a, b = TopicPartition("in", 0), TopicPartition("in", 1)

    listener.on_partitions_assigned([a, b])
    recorder.lag("in", 0, 5)
    listener.on_partitions_revoked([a, b])  # b never had a lag measured: no error

    assert listener.partitions == set()
    assert registry.get_sample_value("sf_assigned_partitions") == 0
    assert (
        registry.get_sample_value("sf_consumer_lag_records", {"topic": "in", "partition": "0"})
        is None
    )
