"""`serve` against the real broker: exact forecasts, dead letters, metrics, SIGTERM."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.model.bundle import ModelBundle
from stream_forecaster.wire.readings import encode_reading
from tests.harness.bundles import untrained_bundle
from tests.harness.kafka_broker import consume, produce
from tests.harness.serve_process import ServeProcess, forecasts

pytestmark = pytest.mark.kafka

WINDOW = 4
MIN = 60_000
T0 = 1_700_000_000_000


def values(key_index: int, i: int) -> dict[str, float | None]:
    # Around the test bundle's scaling means (10, 20, 30): realistic, standardised inputs.
    return {
        "t": 10.0 + 2 * np.sin(i / 3 + key_index),
        "rh": 20.0 + key_index + i % 5,
        "p": 30.0 - 0.05 * i,
    }


def good_records(keys: int, readings: int) -> list[tuple[bytes | None, bytes]]:
    return [
        encode_reading(f"sensor-{k}", T0 + i * MIN, values(k, i))
        for i in range(readings)
        for k in range(keys)
    ]


def offline_forecast(bundle: ModelBundle, key_index: int, end: int) -> float:
    """The Keras model, offline, on the window of ``sensor-<key_index>`` ending at reading
    ``end``."""
    rows = [
        [values(key_index, i)[f] for f in bundle.manifest.features]
        for i in range(end - WINDOW + 1, end + 1)
    ]
    window = np.asarray([rows], dtype=np.float32)
    scaling = bundle.manifest.scaling
    output = bundle.build_model().predict(scaling.scale_inputs(window), verbose=0)[:, 0]
    return float(scaling.forecast(output, window[:, -1, 0].astype(np.float64))[0])


@pytest.fixture
def bundle(tmp_path: Path) -> tuple[ModelBundle, Path]:
    b = untrained_bundle(window=WINDOW)
    return b, b.save(tmp_path / "model.sfmodel")


@pytest.fixture
def serve(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    bundle: tuple[ModelBundle, Path],
    tmp_path: Path,
) -> Iterator[Callable[..., ServeProcess]]:
    topics: dict[str, Any] = {
        "input_topic": new_topic(3),
        "output_topic": new_topic(3),
        "dead_letter_topic": new_topic(1),
    }
    started: list[ServeProcess] = []

    def start(**env: str) -> ServeProcess:
        process = ServeProcess(
            bootstrap=kafka_bootstrap,
            model_path=bundle[1],
            log_path=tmp_path / "serve.log",
            extra_env=env,
            **topics,
        )
        if started:
            process.group_id = started[0].group_id
        started.append(process.start())
        return process

    yield start
    for p in started:
        p.close()


def test_exactly_one_forecast_per_reading_equal_to_keras(
    serve: Callable[..., ServeProcess], bundle: tuple[ModelBundle, Path], kafka_bootstrap: str
) -> None:
    keys, readings = 6, 12
    process = serve()
    process.wait_ready()
    produce(kafka_bootstrap, process.input_topic, good_records(keys, readings))
    expected = keys * (readings - WINDOW + 1)

    out = forecasts(consume(kafka_bootstrap, process.output_topic, expected, settle_s=2))

    assert len(out) == expected
    assert len({(f["key"], f["ts"]) for f in out}) == expected
    for f in out:
        k = int(f["key"].split("-")[1])
        end = (f["window_end_ts"] - T0) // MIN
        assert f["ts"] == f["window_end_ts"] + MIN
        assert f["model_version"] == bundle[0].version
        assert f["target"] == "t"
        assert f["forecast"] == pytest.approx(offline_forecast(bundle[0], k, end), rel=1e-5)
    assert process.metric("sf_forecasts_total") == expected
    assert process.metric("sf_active_keys") == keys
    status, _ = process.terminate()
    assert status == 0
    # A normal run, start to stop: no ERROR line and no traceback in serve's log.
    log = process.log_path.read_text()
    assert " ERROR " not in log and "Traceback" not in log, log


MALFORMED: list[tuple[bytes | None, bytes, str]] = [
    (b"k", b"not json at all", "not_json"),
    (b"k", b"[1, 2, 3]", "not_object"),
    (b"k", b'{"values": {"t": 1, "rh": 2, "p": 3}}', "missing_ts"),
    (b"k", b'{"ts": "yesterday", "values": {"t": 1, "rh": 2, "p": 3}}', "bad_ts"),
    (b"k", b'{"ts": 5, "values": "t=1"}', "bad_values"),
    (b"k", b'{"ts": 5, "values": {"t": "warm", "rh": 2, "p": 3}}', "bad_values"),
    (b"k", b'{"ts": 5, "values": {"t": NaN, "rh": 2, "p": 3}}', "non_finite"),
    (b"k", b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3}, "x": 1}', "unknown_field"),
    (None, b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3}}', "no_key"),
    (b"k", b'{"ts": 5, "values": {"t": 1, "rh": 2}}', "missing_feature"),
    (b"k", b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3, "q": 4}}', "unknown_feature"),
    (b"k", b"\xff\xfe\xfd", "not_utf8"),
    (
        b"k",
        b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3}, "pad": "' + b"x" * 70_000 + b'"}',
        "oversized",
    ),
]


def test_malformed_records_go_to_the_dead_letter_topic_and_nothing_is_lost(
    serve: Callable[..., ServeProcess], kafka_bootstrap: str
) -> None:
    keys, readings = 4, 60
    good = good_records(keys, readings)
    bad = [MALFORMED[i % len(MALFORMED)] for i in range(1000)]
    mixed: list[tuple[bytes | None, bytes]] = []
    for i in range(max(len(good), len(bad))):
        if i < len(good):
            mixed.append(good[i])
        if i < len(bad):
            mixed.append(bad[i][:2])
            if i % 4 == 0 and i + 1 < len(bad):
                mixed.append(bad[i + 1][:2])
    process = serve()
    process.wait_ready()
    pid = process.process.pid if process.process else None
    produce(kafka_bootstrap, process.input_topic, mixed)
    bad_sent = [b for b in (m for m in mixed) if b not in good]

    letters = consume(kafka_bootstrap, process.dead_letter_topic, len(bad_sent), settle_s=1)
    out = forecasts(consume(kafka_bootstrap, process.output_topic, keys * (readings - WINDOW + 1)))

    assert len(out) == keys * (readings - WINDOW + 1)
    assert len(letters) == len(bad_sent)
    reason_of = {value: reason for _, value, reason in MALFORMED}
    seen_reasons = set()
    for letter in letters:
        headers = dict(letter.headers)
        reason = headers["sf.reason"].decode()
        assert reason == reason_of[letter.value], letter.value[:60]
        assert headers["sf.source.topic"].decode() == process.input_topic
        assert int(headers["sf.source.offset"]) >= 0
        assert headers["sf.detail"]
        seen_reasons.add(reason)
    assert len(seen_reasons) >= 10
    assert sorted(letter.value for letter in letters) == sorted(v for _, v in bad_sent)
    total_invalid = sum(
        process.metric("sf_records_invalid_total", {"reason": r}) or 0 for r in seen_reasons
    )
    assert total_invalid == len(bad_sent)
    assert process.process is not None and process.process.pid == pid
    assert process.process.poll() is None  # never restarted, still running


#: Records that each once stopped serve with a traceback (a crash loop on restart).
POISON: list[tuple[bytes | None, bytes, str]] = [
    (
        b"sensor-0",
        b'{"ts": 5, "values": {"t": 1%s, "rh": 2, "p": 3}}' % (b"0" * 400),
        "out_of_range",
    ),
    (
        b"sensor-0",
        b'{"ts": "0001-01-01T00:00:00+14:00", "values": {"t": 1, "rh": 2, "p": 3}}',
        "bad_ts",
    ),
    (
        b"sensor-0",
        b'{"ts": "9999-12-31T23:30:00-01:00", "values": {"t": 1, "rh": 2, "p": 3}}',
        "bad_ts",
    ),
    (None, b'{"key": "sensor-\\ud800", "ts": 5, "values": {"t": 1, "rh": 2, "p": 3}}', "bad_key"),
    (b"sensor-\xed\xa0\x80", b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3}}', "not_utf8"),
    (b"sensor-0", b'{"ts": 4102444800000, "values": {"t": 1, "rh": 2, "p": 3}}', "future_ts"),
]


def test_poison_records_are_dead_letters_and_serve_keeps_its_pid(
    serve: Callable[..., ServeProcess], kafka_bootstrap: str
) -> None:
    keys, readings = 2, 3 * len(POISON)
    good = good_records(keys, readings)
    stream: list[tuple[bytes | None, bytes]] = []
    for i, record in enumerate(good):  # each poison record alone among good readings
        stream.append(record)
        if i % (3 * keys) == 0 and i // (3 * keys) < len(POISON):
            stream.append(POISON[i // (3 * keys)][:2])
    process = serve()
    process.wait_ready()
    pid = process.process.pid if process.process else None
    produce(kafka_bootstrap, process.input_topic, stream)

    letters = consume(kafka_bootstrap, process.dead_letter_topic, len(POISON), settle_s=1)
    out = forecasts(consume(kafka_bootstrap, process.output_topic, keys * (readings - WINDOW + 1)))

    received = {letter.value: (letter.key, dict(letter.headers)["sf.reason"]) for letter in letters}
    assert received == {value: (key, reason.encode()) for key, value, reason in POISON}
    assert len(out) == keys * (readings - WINDOW + 1)  # the year-2100 reading moved nothing
    assert process.process is not None and process.process.pid == pid
    assert process.process.poll() is None


def test_metrics_parse_and_latency_histograms_move(
    serve: Callable[..., ServeProcess], kafka_bootstrap: str, tmp_path: Path
) -> None:
    import shutil
    import subprocess

    process = serve()
    process.wait_ready()
    produce(kafka_bootstrap, process.input_topic, good_records(3, 10))
    consume(kafka_bootstrap, process.output_topic, 3 * (10 - WINDOW + 1))

    status, text = process.get("/metrics")
    assert status == 200
    names = {f.name for f in text_string_to_metric_families(text)}
    for name in (
        "sf_records",
        "sf_records_invalid",
        "sf_forecasts",
        "sf_active_keys",
        "sf_batch_size_windows",
        "sf_inference_seconds",
        "sf_end_to_end_latency_seconds",
        "sf_consumer_lag_records",
        "sf_model_info",
        "sf_commit_failures",
    ):
        assert name in names
    assert (process.metric("sf_end_to_end_latency_seconds_count") or 0) >= 3 * (10 - WINDOW + 1)
    assert (process.metric("sf_inference_seconds_count") or 0) >= 1
    assert process.metric("sf_model_info", {"name": "test"}) == 1
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by make install"
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    # Prometheus' own parser and linter: exit 0 means it parses and follows the conventions.
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert process.get("/healthz")[0] == 200


def test_not_ready_without_a_model_until_one_arrives(
    serve: Callable[..., ServeProcess],
    bundle: tuple[ModelBundle, Path],
    tmp_path: Path,
    kafka_bootstrap: str,
) -> None:
    empty = tmp_path / "registry"
    empty.mkdir()
    process = serve(SF_MODEL__PATH=str(empty))
    deadline_status = None
    for _ in range(100):
        try:
            deadline_status = process.get("/readyz")
            break
        except OSError:
            import time

            time.sleep(0.2)
    assert deadline_status is not None
    assert deadline_status[0] == 503
    assert "no model loaded" in deadline_status[1]
    assert process.metric("sf_model_loaded") == 0
    bundle[0].save(empty)  # a model arrives
    process.wait_ready()
    assert process.metric("sf_model_loaded") == 1
    produce(kafka_bootstrap, process.input_topic, good_records(1, WINDOW))
    assert len(consume(kafka_bootstrap, process.output_topic, 1)) == 1
    assert "no model yet" in process.log_tail(200)


def test_sigterm_mid_stream_exits_fast_and_commits_what_it_published(
    serve: Callable[..., ServeProcess], kafka_bootstrap: str
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    keys, readings = 20, 150
    process = serve()
    process.wait_ready()
    produce(kafka_bootstrap, process.input_topic, good_records(keys, readings))
    consume(kafka_bootstrap, process.output_topic, 200)  # mid-stream
    status, seconds = process.terminate()

    assert status == 0
    assert seconds < 10
    probe = KafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=process.group_id, enable_auto_commit=False
    )
    parts = [TopicPartition(process.input_topic, p) for p in range(3)]
    committed = {tp.partition: probe.committed(tp) or 0 for tp in parts}
    probe.close()
    inputs = consume(kafka_bootstrap, process.input_topic, keys * readings, timeout=30)
    done = [r for r in inputs if r.offset < committed[r.partition]]
    out = forecasts(consume(kafka_bootstrap, process.output_topic, 1, settle_s=2))
    published = {(f["key"], f["window_end_ts"]) for f in out}
    expected = set()
    for r in done:
        reading = json.loads(r.value)
        if (reading["ts"] - T0) // MIN >= WINDOW - 1:
            expected.add((r.key.decode(), reading["ts"]))
    assert sum(committed.values()) > 0
    assert expected <= published  # every committed reading's forecast is out: none lost
    assert len(out) == len(published)
