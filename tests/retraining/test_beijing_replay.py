"""Retraining end to end on the real broker and the real Beijing data: the first model
after enough history, later promotions picked up by serve without a restart, online
accuracy and interval coverage, and the metrics against the same figures offline."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_forecaster.model.registry import Registry
from stream_forecaster.scoring.figures import offline_stats
from stream_forecaster.wire.readings import encode_reading
from tests.harness.kafka_broker import consume, free_port, produce, produce_paced
from tests.harness.serve_process import ServeProcess

pytestmark = pytest.mark.kafka

FEATURES = ("pm2.5", "DEWP", "TEMP", "PRES", "Iws")
WINDOW = 12
# A year of history first: a first model that has seen only winter cannot forecast spring
# (its temperatures are 4-5 standard deviations away) and loses to persistence there.
FIRST_HOURS, MORE_HOURS, TAIL_HOURS = 8760, 2400, 200
FIRST_WINDOWS = 8000  # of the 8,079 windows in the first year: the first model sees it all
SCORING_WINDOW = 100_000  # larger than the replay: the online figures cover every point


def beijing_readings(path: Path, hours: int) -> list[tuple[int, dict[str, float | None]]]:
    """The first ``hours`` rows as (ts, values), NA as None."""
    out: list[tuple[int, dict[str, float | None]]] = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            stamp = datetime(
                int(row["year"]), int(row["month"]), int(row["day"]), int(row["hour"]), tzinfo=UTC
            )
            values = {c: None if row[c] == "NA" else float(row[c]) for c in FEATURES}
            out.append((int(stamp.timestamp() * 1000), values))
            if len(out) == hours:
                break
    return out


class Retrainer:
    """A ``stream-forecaster retrain`` process."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SF_")}
        self.env = {
            **clean,
            **env,
            "SF_METRICS__HOST": "127.0.0.1",
            "SF_METRICS__PORT": str(self.port),
        }
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Retrainer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream_forecaster", "retrain"],
            env=self.env,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )
        return self

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)  # polling files and metrics; there is no event to await
    raise TimeoutError(f"{what} not within {timeout:.0f}s")


@pytest.fixture
def processes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for process in started:
        process.close()


def test_beijing_replay_from_no_model(
    tmp_path: Path,
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    beijing_csv: Path,
    processes: list[Any],
) -> None:
    rows = beijing_readings(beijing_csv, FIRST_HOURS + MORE_HOURS + TAIL_HOURS)
    items = [encode_reading("beijing", ts, values) for ts, values in rows]
    registry = tmp_path / "models"
    registry.mkdir()
    topics = {
        "SF_TOPICS__INPUT": new_topic(1),
        "SF_TOPICS__OUTPUT": new_topic(1),
        "SF_TOPICS__DEAD_LETTER": new_topic(1),
        "SF_TOPICS__MODELS": f"models-{uuid.uuid4().hex[:10]}",
    }
    common = {
        "SF_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SF_MODEL__PATH": str(registry),
        "SF_MODEL__NAME": "beijing",
        **topics,
    }
    retrain = Retrainer(
        {
            **common,
            "SF_MODEL__FEATURES": ",".join(FEATURES),
            "SF_MODEL__TARGET": "pm2.5",
            "SF_MODEL__WINDOW": str(WINDOW),
            "SF_RETRAIN__GROUP_ID": f"retrain-{uuid.uuid4().hex[:10]}",
            "SF_RETRAIN__MIN_SAMPLES": str(FIRST_WINDOWS),
            "SF_RETRAIN__HISTORY_PER_KEY": "12000",
            "SF_RETRAIN__FIRST_EPOCHS": "40",
            "SF_RETRAIN__EPOCHS": "20",
            "SF_RETRAIN__INTERVAL_S": "20",
            "SF_RETRAIN__THREADS": "1",
        },
        tmp_path / "retrain.log",
    )
    processes.append(retrain)
    serve = ServeProcess(
        bootstrap=kafka_bootstrap,
        input_topic=topics["SF_TOPICS__INPUT"],
        output_topic=topics["SF_TOPICS__OUTPUT"],
        dead_letter_topic=topics["SF_TOPICS__DEAD_LETTER"],
        model_path=registry,
        log_path=tmp_path / "serve.log",
        extra_env={
            "SF_TOPICS__MODELS": topics["SF_TOPICS__MODELS"],
            "SF_MODEL__NAME": "beijing",
            "SF_SCORING__WINDOW": str(SCORING_WINDOW),
            "SF_WINDOWS__INTERVAL_MS": "3600000",
        },
    )
    processes.append(serve)

    produce(kafka_bootstrap, topics["SF_TOPICS__INPUT"], items[:FIRST_HOURS])
    retrain.start()
    serve.start()
    serve.wait_ready(timeout=300)  # ready = a model arrived: the retrainer's first one
    first = Registry(registry).current()
    assert first is not None and first.status == "promoted"
    feed = produce_paced(
        kafka_bootstrap,
        topics["SF_TOPICS__INPUT"],
        items[FIRST_HOURS : FIRST_HOURS + MORE_HOURS],
        per_second=60,
    )
    feed.join(timeout=120)
    wait_until(lambda: len(Registry(registry).history()) >= 2, 240, "a second promotion")
    promoted = Registry(registry).history()
    last = promoted[-1]
    wait_until(
        lambda: serve.metric("sf_model_info", {"version": last}) == 1, 120, f"serve on {last}"
    )
    produce(kafka_bootstrap, topics["SF_TOPICS__INPUT"], items[FIRST_HOURS + MORE_HOURS :])
    wait_until(
        lambda: (serve.metric("sf_records_total") or 0) >= len(items), 120, "serve caught up"
    )
    expected = int(serve.metric("sf_forecasts_total") or 0)
    live = {
        v: (
            serve.metric("sf_online_mae", {"model_version": v}),
            serve.metric("sf_online_skill", {"model_version": v}),
        )
        for v in promoted
    }
    forecasts = [
        json.loads(r.value)
        for r in consume(kafka_bootstrap, topics["SF_TOPICS__OUTPUT"], expected, timeout=30)
    ]

    # Every promoted model served, in order, without a restart of serve.
    versions_in_order = list(dict.fromkeys(f["model_version"] for f in forecasts))
    assert versions_in_order == [v for v in promoted if v in versions_in_order]
    assert set(versions_in_order) >= {promoted[0], last}
    assert serve.process is not None and serve.process.poll() is None

    # The guards: PM2.5 was never negative in training, so no forecast and no interval
    # bound is below 0, and every forecast's change is within the training range.
    assert min(f["forecast"] for f in forecasts) >= 0
    assert min(f["lower"] for f in forecasts if f.get("lower") is not None) >= 0
    for version in versions_in_order:
        low, high = Registry(registry).load(version).manifest.scaling.change_bounds or (0, 0)
        assert low < 0 < high  # learned from the data: PM2.5 rises and falls

    # Offline figures from the output topic and the input data.
    actual = {ts: np.float32(v["pm2.5"]) if v["pm2.5"] is not None else None for ts, v in rows}
    known: dict[int, float] = {}
    last_known: float | None = None
    for ts, v in rows:
        if v["pm2.5"] is not None:
            last_known = float(np.float32(v["pm2.5"]))
        if last_known is not None:
            known[ts] = last_known
    points, kept = [], []
    for f in forecasts:
        a = actual.get(f["ts"])
        if a is None or f["window_end_ts"] not in known or not math.isfinite(a):
            continue
        kept.append(f["window_end_ts"])
        points.append(
            (
                f["model_version"],
                f["forecast"],
                float(a),
                known[f["window_end_ts"]],
                f["lower"],
                f["upper"],
            )
        )
    offline = offline_stats(points, SCORING_WINDOW)
    for version, (mae, skill) in live.items():
        if version not in offline:
            continue
        assert mae == pytest.approx(offline[version].mae, rel=1e-3)
        assert skill == pytest.approx(offline[version].skill, rel=1e-3, abs=1e-4)

    # The measure: the second half of the replay's forecasts. It includes hours
    # of the first year (which the first model trained on), so also the strict one: the
    # second half of the hours after the first year, which no model had seen when it
    # forecast them.
    replayed_from = rows[FIRST_HOURS][0]
    after_first_year = [p for p, f in zip(points, kept, strict=True) if f >= replayed_from]
    halves = {
        "second half": points[len(points) // 2 :],
        "second half after the first year": after_first_year[len(after_first_year) // 2 :],
    }
    for name, half in halves.items():
        model_mae = sum(abs(p[1] - p[2]) for p in half) / len(half)
        persistence_mae = sum(abs(p[3] - p[2]) for p in half) / len(half)
        with_interval = [p for p in half if p[4] is not None and p[5] is not None]
        covered = sum(1 for p in with_interval if p[4] <= p[2] <= p[5]) / len(with_interval)
        skill = 1 - model_mae / persistence_mae
        print(f"{name} ({len(half)} forecasts): skill {skill:.3f}, coverage {covered:.3f}")
        assert skill > 0, (name, skill)
        assert 0.87 <= covered <= 0.93, (name, covered)
