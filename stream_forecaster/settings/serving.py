"""How ``serve`` consumes, keeps its windows and state, scores and exposes metrics: sections
``processing``, ``windows``, ``state``, ``scoring`` and ``metrics``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from stream_forecaster.settings.cluster import TopicsSettings
from stream_forecaster.settings.section import Section


class ProcessingSettings(Section):
    """How records are consumed, batched and committed."""

    guarantee: Literal["at_least_once", "exactly_once"] = Field(
        default="at_least_once",
        description="at_least_once: commit offsets after forecasts are flushed; exactly_once: "
        "forecasts, dead letters and offsets in one Kafka transaction.",
    )
    group_id: str = Field(
        default="stream-forecaster",
        min_length=1,
        description="Consumer group: serve processes with the same id share the input's "
        "partitions.",
    )
    transactional_id: str | None = Field(
        default=None,
        description="exactly_once only; stable per instance (default: <group_id>-<hostname>).",
    )
    max_batch: int = Field(default=1024, ge=1, le=100_000, description="Records per poll.")
    inference_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="ONNX Runtime threads for a batch's inference call (0: one per core). "
        "1 leaves the other cores to the Kafka client's IO thread and the broker, faster end "
        "to end on 2 cores than 2 threads (docs/benchmarks.md). More pay on a machine of its own "
        "(their pool spins briefly after each call).",
    )
    session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        le=300_000,
        description="A member that stops heartbeating this long (crashed, partitioned) "
        "loses its partitions to the rest of the group.",
    )
    max_wait_ms: int = Field(
        default=20, ge=0, le=60_000, description="Longest wait for a poll to fill."
    )
    commit_interval_ms: int = Field(
        default=1000,
        ge=0,
        le=60_000,
        description="at_least_once: how often to checkpoint (flush the forecasts, write "
        "the windows changed since the last checkpoint to the changelog, commit offsets); "
        "0: after every batch. Forecasts are sent at once either way; a crash reprocesses "
        "at most this much. exactly_once commits every batch (one transaction each).",
    )
    max_record_bytes: int = Field(
        default=64 * 1024,
        ge=64,
        le=16 * 1024 * 1024,
        description="Larger input records are dead letters (oversized).",
    )
    shutdown_timeout_s: float = Field(
        default=8.0,
        gt=0,
        le=300,
        description="The longest shutdown after SIGTERM or Ctrl-C (serve and retrain): "
        "past it the process prints every thread's stack to the log and exits (status 1).",
    )
    model_poll_s: float = Field(
        default=5.0, gt=0, le=3600, description="How often to look for a (new) model bundle."
    )


class WindowSettings(Section):
    """Per-key windows and their time rules."""

    interval_ms: int | None = Field(
        default=None, ge=1, description="Sampling interval; unset means: learned per key."
    )
    max_gap: float = Field(
        default=3.0, gt=1, description="A step longer than this many intervals is a gap."
    )
    gap_policy: Literal["reset", "fill"] = Field(
        default="reset", description="On a gap: start the window afresh, or fill forward."
    )
    late_tolerance_ms: int = Field(
        default=0,
        ge=0,
        description="Older than the newest reading by at most this much: counted as "
        "out_of_order rather than late. Both are dropped.",
    )
    max_future_ms: int | None = Field(
        default=3_600_000,
        ge=0,
        description="A reading stamped more than this ahead of the wall clock is a dead "
        "letter (future_ts) rather than the key's newest time (which would make every "
        "correct reading after it late); unset: no limit. The default is Kafka's own "
        "limit for record timestamps (log.message.timestamp.after.max.ms).",
    )
    rewind_after: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="This many late readings in a row, each newer than the one before and "
        "more than max_gap intervals older than the key's newest, restart the key's window "
        "from them (its clock or its feed went back); counted as "
        'sf_window_gaps_total{action="rewind"}. 0: late readings are always dropped.',
    )
    key_ttl_s: float = Field(
        default=24 * 3600.0, gt=0, description="Keys idle this long are evicted."
    )


class StateSettings(Section):
    """Window state that survives restarts and rebalances (a compacted changelog topic)."""

    changelog: bool = Field(
        default=True,
        description="Write each changed window to the changelog topic at every checkpoint "
        "and restore windows from it when partitions are assigned. Off: windows re-warm "
        "after every restart or rebalance.",
    )
    changelog_topic: str | None = Field(
        default=None,
        min_length=1,
        max_length=249,
        description="Compacted topic of window snapshots, one partition per input "
        "partition; created at start-up when missing (default: "
        "<group_id>.<input topic>.windows).",
    )
    restore_timeout_s: float = Field(
        default=120.0,
        gt=0,
        le=3600,
        description="Longest wait for a restore to reach the changelog's end (it waits "
        "for open transactions of a crashed instance to be aborted).",
    )
    retry_backoff_max_s: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Longest pause between attempts to recover from a Kafka failure.",
    )

    @field_validator("changelog_topic")
    @classmethod
    def _legal_topic(cls, value: str | None) -> str | None:
        return None if value is None else TopicsSettings._legal_topic(value)


class ScoringSettings(Section):
    """Online accuracy of the served forecasts, and their prediction intervals."""

    window: int = Field(
        default=1000,
        ge=10,
        le=1_000_000,
        description="Scored forecasts per model version in the sliding MAE/RMSE window; "
        "also the conformal calibration window.",
    )
    coverage: float = Field(
        default=0.9, gt=0, lt=1, description="Coverage of the prediction intervals."
    )
    interval_method: Literal["conformal", "mc_dropout"] = Field(
        default="conformal",
        description="conformal: quantile of recent absolute errors; mc_dropout: spread of "
        "samples with the Dropout(0.2) layer active.",
    )
    mc_samples: int = Field(default=30, ge=2, le=1000, description="mc_dropout samples.")
    interval_width: Literal["pooled", "per_key"] = Field(
        default="pooled",
        description="conformal intervals: pooled: one width for every key; per_key: the width "
        "follows each key's recent error scale (a quiet key narrow, a volatile one wide).",
    )
    min_errors: int = Field(
        default=30, ge=1, description="Errors needed before conformal intervals are given."
    )


class MetricsSettings(Section):
    """Prometheus /metrics endpoint."""

    host: str = Field(default="0.0.0.0", description="Address of /metrics, /healthz and /readyz.")
    port: int = Field(default=9464, ge=0, le=65535, description="0 picks a free port.")
