"""What one batch, one restore and one eviction did: the records to send, and the report
the metrics are made from (:class:`~stream_forecaster.monitoring.recorder.ServeRecorder`
turns it into samples; the pipeline itself writes none)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple

from stream_forecaster.wire.records import OutputRecord


@dataclass
class BatchReport:
    """What happened in one batch, in counts and timings.

    Args:
        records: input records consumed, per topic.
        invalid: records rejected (dead letters), per reason.
        ignored: valid readings not added to a window, per time rule.
        gaps: gaps in a key's readings, per action taken.
        windows: windows in the batch's inference call (0: no call).
        inference_seconds: how long that call took.
        non_finite: forecasts not published because the model gave NaN or infinity.
        clipped: forecasts the guards changed (floored at 0, or their change clipped to
            the range seen in training).
        active_keys: keys with a window after the batch.
    """

    records: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    gaps: Counter[str] = field(default_factory=Counter)
    windows: int = 0
    inference_seconds: float = 0.0
    non_finite: int = 0
    clipped: int = 0
    active_keys: int = 0


@dataclass
class BatchOutput:
    """What one batch produced.

    Args:
        forecasts: forecast records, in input order.
        dead_letters: rejected input records, in input order.
        changed: key -> input partition of every window the batch changed (for the
            changelog, written at the checkpoint:
            :meth:`~stream_forecaster.serving.pipeline.BatchProcessor.changelog`).
        offsets: per (topic, partition), the next offset to commit.
        report: what happened, for the metrics.
    """

    forecasts: list[OutputRecord] = field(default_factory=list)
    dead_letters: list[OutputRecord] = field(default_factory=list)
    changed: dict[str, int] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    report: BatchReport = field(default_factory=BatchReport)


class Restored(NamedTuple):
    """Windows loaded from changelog snapshots, and snapshots skipped (damaged, or of
    another window shape)."""

    windows: int
    skipped: int


class Eviction(NamedTuple):
    """Keys evicted for being idle, and the changelog tombstones that delete them."""

    keys: int
    tombstones: list[OutputRecord]
