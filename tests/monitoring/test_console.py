"""`watch`: quantiles from buckets, rates over an interval, several instances, rendering, and
one run against a real `serve`."""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_forecaster.cli.watch import add_parser
from stream_forecaster.cli.watch import run as run_watch
from stream_forecaster.monitoring.console import (
    Frame,
    format_line,
    format_plain,
    format_screen,
    observe,
    watch,
)
from stream_forecaster.monitoring.latest_forecasts import LatestForecasts
from stream_forecaster.monitoring.quantiles import histogram_quantile
from stream_forecaster.monitoring.scrape import (
    INFERENCE,
    LATENCY,
    Quantiles,
    Snapshot,
    Summary,
    combine,
    increase,
    parse_metrics,
    scrape,
    summarize,
)
from stream_forecaster.serving.recorder import ServeRecorder
from stream_forecaster.settings import KafkaSettings, Settings, TopicsSettings
from stream_forecaster.wire.forecasts import Forecast
from stream_forecaster.wire.readings import encode_reading
from tests.harness.bundles import untrained_bundle
from tests.harness.kafka_broker import free_port
from tests.harness.serve_process import ServeProcess

INF = math.inf
H = {0.1: 50.0, 0.2: 100.0, INF: 100.0}


# -- histogram_quantile: every expected value below is what Prometheus 2.42 answers ----------


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, H, 0.1),  # rank 50 is the top of the first bucket
        (0.75, H, 0.15),  # rank 75: halfway into (0.1, 0.2]
        (0.25, H, 0.05),  # the first bucket starts at 0
        (1.0, H, 0.2),
        (0.99, {0.1: 10.0, 0.2: 10.0, INF: 20.0}, 0.2),  # in +Inf: the highest finite bound
        (0.5, {0.1: 10.0, 0.2: 10.0, INF: 20.0}, 0.1),
        (0.25, {-1.0: 5.0, 0.1: 10.0, INF: 10.0}, -1.0),  # a first bound <= 0 is the answer
        (0.75, {-1.0: 5.0, 0.1: 10.0, INF: 10.0}, -0.45),
        (0.5, {0.1: 0.0, INF: 0.0}, None),  # no observations
        (0.5, {}, None),  # no histogram
        (0.5, {INF: 5.0}, None),  # a single bucket: Prometheus needs two
        (0.5, {0.1: 5.0}, None),  # no +Inf bucket
        (0.0, {0.1: 0.0, 0.2: 10.0, INF: 10.0}, None),  # 0/0, NaN in Prometheus
    ],
)
def test_histogram_quantile(q: float, buckets: dict[float, float], expected: float | None) -> None:
    got = histogram_quantile(q, buckets)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_histogram_quantile_rejects_a_quantile_outside_0_1() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        histogram_quantile(1.5, H)


# -- snapshots, from the metrics serve really exports ---------------------------------------


class Instance:
    """One serve's metrics on its own registry; ``text()`` is its /metrics page."""

    def __init__(self, version: str = "v1", keys: int = 0) -> None:
        self.registry = CollectorRegistry()
        recorder = ServeRecorder(self.registry)
        recorder.model_served("m", version)
        self.m = recorder.metrics
        self.m.active_keys.set(keys)

    def serve(self, records: int, forecasts: int, latency_s: float = 0.003) -> Instance:
        self.m.records.labels(topic="in").inc(records)
        self.m.forecasts.inc(forecasts)
        for _ in range(forecasts):
            self.m.end_to_end_seconds.observe(latency_s)
        self.m.inference_seconds.observe(0.0002)
        return self

    def text(self) -> str:
        return generate_latest(self.registry).decode()


def interval(old: list[str], new: list[str], seconds: float = 2.0) -> Summary:
    before, after = [parse_metrics(t) for t in old], [parse_metrics(t) for t in new]
    gained = combine(increase(b, a) for b, a in zip(before, after, strict=True))
    return summarize(gained, combine(after), seconds, len(after), [])


def test_parse_takes_what_serve_exports() -> None:
    a = Instance("v7", keys=3).serve(records=10, forecasts=4)
    a.m.records_invalid.labels(reason="not_json").inc(2)
    a.m.records_invalid.labels(reason="bad_ts").inc(1)
    a.m.consumer_lag.labels(topic="in", partition="0").set(5)
    a.m.consumer_lag.labels(topic="in", partition="1").set(2)

    s = parse_metrics(a.text())

    assert s.values["sf_records_total"] == 10
    assert s.values["sf_records_invalid_total"] == 3  # summed over reasons
    assert s.values["sf_consumer_lag_records"] == 7  # summed over partitions
    assert s.values["sf_active_keys"] == 3
    assert s.values["sf_model_loaded"] == 1
    assert s.versions == {"v7"}
    assert s.buckets[LATENCY][0.005] == 4
    assert s.buckets[LATENCY][INF] == 4
    assert s.buckets[INFERENCE][0.00025] == 1


def test_rates_and_quantiles_cover_only_the_interval() -> None:
    a = Instance(keys=10)
    first = a.serve(records=100, forecasts=100, latency_s=0.2).text()  # slow, before
    second = a.serve(records=220, forecasts=180, latency_s=0.003).text()
    a.m.records_invalid.labels(reason="not_json").inc(40)
    third = a.text()

    s = interval([first], [second])
    assert s.forecasts_per_s == pytest.approx(90)
    assert s.records_per_s == pytest.approx(110)
    assert s.invalid_per_s == 0
    # all 180 new observations fell in (0.0025, 0.005]: p50 at rank 90 of 180 is halfway
    assert s.latency.p50 == pytest.approx(0.0025 + 0.0025 * 90 / 180)
    assert s.latency.p99 == pytest.approx(0.0025 + 0.0025 * 178.2 / 180)
    assert not s.latency.cumulative
    assert s.inference.p99 == pytest.approx(0.0001 + 0.00015 * 0.99)
    assert (s.keys, s.lag, s.loaded, s.versions) == (10, 0, 1, ("v1",))

    quiet = interval([second], [third])
    assert quiet.forecasts_per_s == 0
    assert quiet.invalid_per_s == pytest.approx(20)
    # nothing observed: the quantiles since the start, marked as such
    assert quiet.latency.cumulative
    assert quiet.latency.p99 == pytest.approx(0.1 + 0.15 * (277.2 - 180) / 100)  # of 280
    assert "(cumulative)" in format_line(quiet)


def test_a_counter_reset_counts_from_zero_not_negative() -> None:
    before = Instance().serve(records=1000, forecasts=1000, latency_s=0.2).text()
    after = Instance().serve(records=40, forecasts=30, latency_s=0.003).text()  # restarted

    s = interval([before], [after], seconds=1.0)

    assert s.forecasts_per_s == pytest.approx(30)
    assert s.records_per_s == pytest.approx(40)
    assert not s.latency.cumulative
    assert s.latency.p99 is not None and s.latency.p99 <= 0.005  # only the new process's


def test_several_instances_are_summed() -> None:
    a, b = Instance("v1", keys=4), Instance("v2", keys=6)
    old = [a.serve(10, 10).text(), b.serve(10, 10).text()]
    b.m.model_loaded.set(0)
    new = [a.serve(30, 20).text(), b.serve(50, 40).text()]

    s = interval(old, new, seconds=2.0)

    assert s.forecasts_per_s == pytest.approx(30)
    assert s.records_per_s == pytest.approx(40)
    assert (s.keys, s.up, s.loaded, s.versions) == (10, 2, 1, ("v1", "v2"))
    assert "(1 waiting for a model)" in format_line(s)


def test_an_instance_seen_for_the_first_time_adds_no_rate() -> None:
    gained = increase(None, parse_metrics(Instance().serve(500, 500).text()))
    assert gained == Snapshot()


# -- rendering ----------------------------------------------------------------------------


def summary(**changes: object) -> Summary:
    base: dict[str, object] = {
        "forecasts_per_s": 1234.5,
        "records_per_s": 1240.0,
        "invalid_per_s": 0.0,
        "latency": Quantiles(0.0123, 0.0456),
        "inference": Quantiles(0.0005, 0.0012),
        "keys": 1000,
        "lag": 3,
        "versions": ("20261124T142450Z-04ae9a38",),
        "loaded": 1,
        "up": 1,
        "down": (),
    }
    return Summary(**{**base, **changes})  # type: ignore[arg-type]


FORECAST = Forecast(
    key="beijing-00",
    ts=1_388_552_400_000,
    target="pm2.5",
    forecast=123.44,
    model_version="20261124T142450Z-04ae9a38",
    window_end_ts=1_388_548_800_000,
)


def test_the_plain_lines() -> None:
    assert format_plain(Frame(0.0, summary(), (FORECAST,))) == [
        "watch: 1234.5 forecasts/s, 1240.0 records/s, 0.0 invalid/s, latency p50 12.3 ms "
        "p99 45.6 ms, inference p99 1.2 ms, 1000 keys, lag 3, model 20261124T142450Z-04ae9a38",
        "watch: latest beijing-00 2014-01-01T05:00:00Z pm2.5=123.4 "
        "(model 20261124T142450Z-04ae9a38)",
    ]
    waiting = summary(loaded=0, versions=(), latency=Quantiles(None, None), down=("http://x",))
    assert format_plain(Frame(0.0, waiting, ())) == [
        "watch: 1234.5 forecasts/s, 1240.0 records/s, 0.0 invalid/s, latency p50 - p99 -, "
        "inference p99 1.2 ms, "
        "1000 keys, lag 3, model waiting for a model, down: http://x"
    ]
    assert format_line(summary(up=0, down=("http://a", "http://b"))) == (
        "watch: all metrics endpoints down: http://a, http://b"
    )


def test_the_screen() -> None:
    screen = format_screen(Frame(0.0, summary(), (FORECAST, FORECAST)), interval=1.0)
    assert screen.startswith("\x1b[H\x1b[2J")  # home, clear: redrawn in place
    lines = screen.splitlines()
    assert "every 1 s" in lines[0]
    assert any("1234.5 forecasts/s" in line for line in lines)
    assert sum("beijing-00" in line and "123.4" in line for line in lines) == 2
    assert "(no forecasts yet)" in format_screen(Frame(0.0, summary(), ()), 1.0)
    assert "for (UTC)" not in format_screen(Frame(0.0, summary(), None), 1.0)  # --no-forecasts


# -- scraping and the loop, against a small HTTP server -------------------------------------


class FakeServe:
    """An HTTP server answering /metrics with ``text``; ``on_scrape`` runs on each scrape."""

    def __init__(self) -> None:
        self.text = ""
        self.scrapes = 0
        self.on_scrape: Callable[[int], None] = lambda n: None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.scrapes += 1
                outer.on_scrape(outer.scrapes)
                body = outer.text.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def fake_serve() -> Iterator[FakeServe]:
    fake = FakeServe()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


def test_an_unreachable_url_is_down_not_an_error(fake_serve: FakeServe) -> None:
    fake_serve.text = Instance(keys=2).serve(5, 5).text()
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    assert scrape(closed, timeout=0.5) is None
    assert scrape("not a url") is None

    frame = next(observe([fake_serve.url, closed], interval=0.05))

    assert (frame.summary.up, frame.summary.down) == (1, (closed,))
    assert frame.summary.keys == 2
    assert format_line(frame.summary).endswith(f", down: {closed}")
    assert frame.latest is None


def test_the_forecast_reader_waits_quietly_for_an_unreachable_broker() -> None:
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    latest = LatestForecasts(settings, keep=3)
    started = time.monotonic()
    latest.poll()
    latest.poll()  # within the retry delay: returns at once
    assert latest.newest() == ()
    assert time.monotonic() - started < 5
    latest.close()


def parse_watch(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(), argparse.ArgumentParser(add_help=False))
    return parser.parse_args(["watch", *argv])


def test_options() -> None:
    args = parse_watch([])
    assert (args.metrics_url, args.interval, args.forecasts, args.duration) == (None, 1.0, 8, None)
    assert not args.no_forecasts and not args.plain and args.handler is run_watch
    args = parse_watch(["--metrics-url", "http://a", "--metrics-url", "http://b", "--plain"])
    assert args.metrics_url == ["http://a", "http://b"] and args.plain
    for bad in (["--interval", "0"], ["--interval", "x"], ["--duration", "-1"]):
        with pytest.raises(SystemExit):
            parse_watch(bad)


def test_watch_prints_one_line_per_interval_and_stops(
    fake_serve: FakeServe, capsys: pytest.CaptureFixture[str]
) -> None:
    instance = Instance(keys=7)
    fake_serve.text = instance.text()

    def more(n: int) -> None:  # 50 forecasts between two scrapes
        fake_serve.text = instance.serve(50, 50).text()

    fake_serve.on_scrape = more
    args = parse_watch(["--metrics-url", fake_serve.url, "--interval", "0.1", "--duration", "0.35"])
    args.no_forecasts = True

    assert watch(args, Settings()) == 0

    lines = capsys.readouterr().out.splitlines()
    assert 1 <= len(lines) <= 5  # one per interval, until the first after 0.35 s
    for line in lines:
        m = re.match(r"watch: (\d+\.\d) forecasts/s, .* 7 keys, lag 0, model v1$", line)
        assert m and float(m[1]) > 0, line


def test_sigterm_stops_it_with_status_0(fake_serve: FakeServe) -> None:
    fake_serve.text = Instance().text()
    fake_serve.on_scrape = lambda n: os.kill(os.getpid(), signal.SIGTERM) if n == 3 else None
    before = signal.getsignal(signal.SIGTERM)
    args = parse_watch(["--metrics-url", fake_serve.url, "--interval", "0.05", "--no-forecasts"])

    assert watch(args, Settings()) == 0  # no --duration: only the signal stops it

    assert fake_serve.scrapes >= 3
    assert signal.getsignal(signal.SIGTERM) == before


# -- a real serve on the real broker -----------------------------------------------------------


LINE = re.compile(
    r"watch: (?P<rate>[\d.]+) forecasts/s, .* latency p50 (?P<p50>[\d.]+) ms "
    r"p99 (?P<p99>[\d.]+) ms, .* model (?P<model>\S+)"
)


@pytest.mark.kafka
def test_watch_a_real_serve(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> None:
    bundle = untrained_bundle(window=4)
    topics = {"input": new_topic(2), "output": new_topic(2), "dead_letter": new_topic(1)}
    serve = ServeProcess(
        bootstrap=kafka_bootstrap,
        input_topic=topics["input"],
        output_topic=topics["output"],
        dead_letter_topic=topics["dead_letter"],
        model_path=bundle.save(tmp_path / "model.sfmodel"),
        log_path=tmp_path / "serve.log",
    ).start()
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap), topics=TopicsSettings(**topics)
    )
    latest = LatestForecasts(settings, keep=8)
    not_yet = TopicsSettings(output=f"not-yet-{uuid.uuid4().hex[:8]}")
    missing = LatestForecasts(settings.model_copy(update={"topics": not_yet}), keep=8)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(kafka_bootstrap, topics["input"], stop))
    lines: list[str] = []
    try:
        missing.poll()  # a topic not created yet: nothing, quietly
        assert missing.newest() == ()
        serve.wait_ready()
        feeder.start()
        deadline = time.monotonic() + 30
        for frame in observe([f"http://127.0.0.1:{serve.port}/metrics"], 0.5, latest):
            lines += format_plain(frame)
            if seen_everything(lines, bundle.version) or time.monotonic() > deadline:
                break
    finally:
        stop.set()
        latest.close()
        missing.close()
        if feeder.is_alive():
            feeder.join(timeout=30)
        serve.close()

    assert seen_everything(lines, bundle.version), "\n".join(lines) + "\n" + serve.log_tail()


def seen_everything(lines: list[str], version: str) -> bool:
    """A positive rate with a latency p99 and the model version, and a latest forecast."""
    measured = [m for m in map(LINE.match, lines) if m and float(m["rate"]) > 0]
    return any(m["model"] == version and float(m["p99"]) > 0 for m in measured) and any(
        line.startswith("watch: latest sensor-") and f"(model {version})" in line for line in lines
    )


def feed(bootstrap: str, topic: str, stop: threading.Event) -> None:
    """Readings for 8 keys, a step every 50 ms, until ``stop``: a live feed."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    step = 0
    try:
        while not stop.wait(0.05):  # the feed's pace
            for k in range(8):
                values: dict[str, float | None] = {
                    "t": 10 + math.sin(step / 3 + k),
                    "rh": 20.0 + k,
                    "p": 30.0,
                }
                key, value = encode_reading(
                    f"sensor-{k}", 1_700_000_000_000 + step * 60_000, values
                )
                producer.send(topic, key=key, value=value)
            step += 1
    finally:
        producer.close(timeout=10)
