"""kill -9 mid-stream and restart: exactly_once never shows a (key, ts) twice nor an aborted
forecast; at_least_once duplicates only what came after the last commit."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stream_forecaster.wire.readings import encode_reading
from tests.harness.bundles import untrained_bundle
from tests.harness.kafka_broker import committed_offsets, consume, produce_paced, wait_all_committed
from tests.harness.serve_process import ServeProcess

pytestmark = pytest.mark.kafka

WINDOW = 4
MIN = 60_000
T0 = 1_700_000_000_000
KEYS, READINGS, PARTITIONS = 30, 80, 3


def records() -> list[tuple[bytes, bytes]]:
    return [
        encode_reading(
            f"k{k:02d}",
            T0 + i * MIN,
            {"t": 10.0 + (i * 7 + k) % 5, "rh": 20.0 + k % 3, "p": 30.0 - i / 50},
        )
        for i in range(READINGS)
        for k in range(KEYS)
    ]


def input_positions(bootstrap: str, topic: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(key, ts) -> (partition, offset) of every input record."""
    return {
        (r.key.decode(), json.loads(r.value)["ts"]): (r.partition, r.offset)
        for r in consume(bootstrap, topic, KEYS * READINGS, timeout=60)
    }


def run_kill_restart(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str], guarantee: str
) -> tuple[list[dict[str, Any]], dict[int, int], dict[tuple[str, int], tuple[int, int]], str]:
    registry = tmp_path / "models"
    registry.mkdir()
    first = untrained_bundle(window=WINDOW, created_at="2026-01-01T00:00:00Z")
    first.save(registry)
    topics: dict[str, Any] = {
        "input_topic": new_topic(PARTITIONS),
        "output_topic": new_topic(PARTITIONS),
        "dead_letter_topic": new_topic(1),
    }
    env = {
        "SF_PROCESSING__GUARANTEE": guarantee,
        "SF_PROCESSING__TRANSACTIONAL_ID": f"sf-test-{guarantee}",
        "SF_PROCESSING__MAX_BATCH": "50",
        # Checkpoints well within the run, so that the kill comes after some commits.
        "SF_PROCESSING__COMMIT_INTERVAL_MS": "100",
    }
    first_run = ServeProcess(
        bootstrap=kafka_bootstrap,
        model_path=registry,
        log_path=tmp_path / "serve.log",
        extra_env=env,
        **topics,
    )
    first_run.start().wait_ready()
    feed = produce_paced(kafka_bootstrap, first_run.input_topic, records(), per_second=800)
    consume(kafka_bootstrap, first_run.output_topic, 400, isolation_level="read_uncommitted")
    first_run.kill()  # kill -9, mid-stream
    at_kill = committed_offsets(
        kafka_bootstrap, first_run.group_id, first_run.input_topic, PARTITIONS
    )

    untrained_bundle(window=WINDOW, seed=11, created_at="2026-02-01T00:00:00Z").save(registry)
    second = ServeProcess(
        bootstrap=kafka_bootstrap,
        model_path=registry,
        log_path=tmp_path / "serve.log",
        extra_env=env,
        group_id=first_run.group_id,
        **topics,
    )
    try:
        second.start().wait_ready()
        feed.join(timeout=60)
        wait_all_committed(
            kafka_bootstrap, second.group_id, second.input_topic, PARTITIONS, KEYS * READINGS
        )
    finally:
        second.terminate()
    out = [
        json.loads(r.value) for r in consume(kafka_bootstrap, second.output_topic, 1, settle_s=3)
    ]
    assert 0 < sum(at_kill.values()) < KEYS * READINGS, "the kill was not mid-stream"
    return out, at_kill, input_positions(kafka_bootstrap, second.input_topic), first.version


def test_exactly_once_survives_kill_9(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    out, at_kill, where, first_version = run_kill_restart(
        tmp_path, kafka_bootstrap, new_topic, "exactly_once"
    )
    seen = Counter((f["key"], f["window_end_ts"]) for f in out)
    assert max(seen.values()) == 1  # a read_committed reader never sees a (key, ts) twice
    for f in out:
        partition, offset = where[(f["key"], f["window_end_ts"])]
        if f["model_version"] == first_version:
            # From the killed process: only what its committed transactions hold.
            assert offset < at_kill[partition]
        else:
            assert offset >= at_kill[partition]
    # Every record committed before the kill has its forecast (after its key's warm-up).
    committed_inputs = {
        kt for kt, (p, o) in where.items() if o < at_kill[p] and (kt[1] - T0) // MIN >= WINDOW - 1
    }
    assert committed_inputs <= set(seen)


def test_at_least_once_duplicates_only_after_the_last_commit(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    out, at_kill, where, _first_version = run_kill_restart(
        tmp_path, kafka_bootstrap, new_topic, "at_least_once"
    )
    seen = Counter((f["key"], f["window_end_ts"]) for f in out)
    for (key, ts), count in seen.items():
        partition, offset = where[(key, ts)]
        if count > 1:
            assert offset >= at_kill[partition]
    committed_inputs = {
        kt for kt, (p, o) in where.items() if o < at_kill[p] and (kt[1] - T0) // MIN >= WINDOW - 1
    }
    assert committed_inputs <= set(seen)
    assert all(seen[kt] == 1 for kt in committed_inputs)
