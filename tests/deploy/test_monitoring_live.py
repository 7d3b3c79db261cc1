"""The dashboard and the alerts, proven against the real thing.

A real ``serve`` on the session's Kafka broker, a real ``prometheus`` (Debian's package)
scraping its /metrics every second with the real deploy/prometheus/alerts.yml loaded; the
feed is readings (with a duplicate, a late reading and a gap among them), then a burst of
malformed records. Then every PromQL expression of every dashboard panel and every alert
expression goes through Prometheus' HTTP API:

- each panel query returns data. Exceptions: a query may come back empty when a metric it
  reads has no series yet in serve's own /metrics and is a labelled one (an unlabelled
  metric always has its series), i.e. a label value whose first event has not happened;
  and the queries of the retrain worker's metrics (the dashboard's "Retraining" row) are
  sent (Prometheus must accept them) but may be empty, only because this test runs no
  ``retrain``: their metrics are not scraped here at all;
- the online accuracy series (forecasts are scored as the readings for their times
  arrive) carry the model version that ``sf_model_info`` reports, which the
  ForecastSkillBelowZero and IntervalCoverageLow alerts join on;
- after the burst, ForecasterDeadLetterRate's expression is true; on this healthy stream
  ForecasterNoForecasts', ForecasterNoModel's, ForecasterCommitFailures' and
  ForecasterDown's are false; once serve stops, ForecasterDown's is true.

Alerts are judged by their expressions, not their firing state: their ``for:`` durations
(minutes) are not waited out here; ``promtool test rules`` covers those.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.wire.readings import encode_reading
from tests.harness.bundles import untrained_bundle
from tests.harness.kafka_broker import free_port, produce
from tests.harness.monitoring import (
    ALERTS,
    PROMETHEUS_SERIES,
    alert_rules,
    dashboard_panels,
    exported_families,
    exporter_of,
    metric_names,
    panel_expressions,
    substitute_variables,
    variable_expressions,
)
from tests.harness.serve_process import ServeProcess

pytestmark = pytest.mark.kafka

WINDOW = 4
MIN = 60_000
T0 = 1_700_000_000_000
JOB = "stream-forecaster"  # the job name alerts.yml's ForecasterDown selects
#: Conformal intervals after this many scored errors (default 30), so that this short feed
#: also produces forecasts with intervals, and sf_interval_coverage_ratio a series.
MIN_ERRORS = 10

#: Malformed records (key, value) of several rejection reasons.
MALFORMED: list[tuple[bytes | None, bytes]] = [
    (b"k", b"not json at all"),
    (b"k", b"[1, 2, 3]"),
    (b"k", b'{"values": {"t": 1, "rh": 2, "p": 3}}'),
    (b"k", b'{"ts": 5, "values": {"t": "warm", "rh": 2, "p": 3}}'),
    (None, b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3}}'),
    (b"k", b'{"ts": 5, "values": {"t": 1, "rh": 2, "p": 3, "q": 4}}'),
]


@dataclass
class Prometheus:
    """A real ``prometheus`` process scraping one target every second."""

    workdir: Path
    target: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        binary = shutil.which("prometheus")
        assert binary, "prometheus comes with Debian's prometheus package (make install)"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ALERTS)],
            "scrape_configs": [
                {
                    "job_name": JOB,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [self.target]}],
                }
            ],
        }
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query: 400 with the error in JSON
            body = exc.read().decode(errors="replace")
            raise AssertionError(f"{path} {params}: HTTP {exc.code}: {body}") from None

    def query(self, expr: str) -> list[Any]:
        """The result of an instant query (raises on a query Prometheus rejects)."""
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        if answer["data"]["resultType"] == "scalar":
            return [result]
        return list(result)

    def wait_for(self, expr: str, what: str, timeout: float = 30) -> list[Any]:
        """Poll the query until it returns data (Prometheus has no event to await)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_running()
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: `{expr}` still empty after {timeout}s")
            time.sleep(0.25)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")

    def check_running(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{self.log_tail()}")

    def log_tail(self) -> str:
        log = self.workdir / "prometheus.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def serve(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> Iterator[ServeProcess]:
    bundle = untrained_bundle(window=WINDOW, name="monitoring")
    process = ServeProcess(
        bootstrap=kafka_bootstrap,
        input_topic=new_topic(3),
        output_topic=new_topic(3),
        dead_letter_topic=new_topic(1),
        model_path=bundle.save(tmp_path / "model.sfmodel"),
        log_path=tmp_path / "serve.log",
        extra_env={"SF_SCORING__MIN_ERRORS": str(MIN_ERRORS)},
    )
    try:
        yield process.start()
    finally:
        process.close()


@pytest.fixture
def prometheus(serve: ServeProcess, tmp_path: Path) -> Iterator[Prometheus]:
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    server = Prometheus(workdir, target=f"127.0.0.1:{serve.port}").start()
    try:
        yield server
    finally:
        server.stop()


def reading(key: int, i: int) -> tuple[bytes, bytes]:
    return encode_reading(
        f"sensor-{key}",
        T0 + i * MIN,
        {"t": 10.0 + 2 * float(np.sin(i / 3 + key)), "rh": 20.0 + key + i % 5, "p": 30.0},
    )


def exposed_series(serve: ServeProcess) -> set[str]:
    """The sample names serve's /metrics has right now."""
    status, text = serve.get("/metrics")
    assert status == 200
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def query_every_panel(
    serve: ServeProcess, prometheus: Prometheus
) -> tuple[list[str], list[str], list[str], int]:
    """Each dashboard panel's queries on real Prometheus: those without data, those whose
    labelled metrics have no series yet, those of metrics not scraped here (retrain's), and
    how many queries read serve's metrics."""
    exposed = exposed_series(serve)
    labelled = {name for f in exported_families("serve") if f.labels for name in f.series}
    problems, waited_out, not_scraped = [], [], []
    serve_queries = 0
    deadline = time.monotonic() + 20
    for panel in dashboard_panels():
        for expr in panel_expressions(panel):
            query = substitute_variables(expr)
            assert "$" not in query, f"{panel['title']}: unsubstituted variable in {query}"
            read = metric_names(query) - PROMETHEUS_SERIES
            if read and all(exporter_of(name) != "serve" for name in read):
                # The retrain worker's metrics: this test runs serve only, so they are not
                # scraped and the query is empty for that reason alone. Prometheus still
                # parses and evaluates it (a rejected query raises).
                prometheus.query(query)
                not_scraped.append(f"{panel['title']}: {query}")
                continue
            serve_queries += 1
            while not prometheus.query(query) and time.monotonic() < deadline:
                time.sleep(0.25)  # a rate needs two scrapes of a new series
            if prometheus.query(query):
                continue
            missing = read - exposed
            if missing and missing <= labelled:
                # A labelled metric with no series on serve's /metrics yet (a label value
                # whose first event has not happened); an unlabelled one always has one.
                waited_out.append(f"{panel['title']}: {query} (no series: {sorted(missing)})")
            else:
                problems.append(f"{panel['title']}: {query}")
    return problems, waited_out, not_scraped, serve_queries


def test_every_panel_and_alert_expression_works_on_real_prometheus(
    serve: ServeProcess, prometheus: Prometheus, kafka_bootstrap: str
) -> None:
    alerts = {rule["alert"]: str(rule["expr"]) for rule in alert_rules()}
    prometheus.wait_ready()
    serve.wait_ready()
    prometheus.wait_for(f'up{{job="{JOB}"}} == 1', "serve scraped")

    # Readings of four keys, a duplicate (the newest reading again), a late one (older than
    # the newest), and a key with a gap.
    first = [reading(k, i) for i in range(12) for k in range(4)]
    first += [reading(0, 11), reading(1, 5)]
    first += [reading(9, i) for i in (*range(6), 20)]
    produce(kafka_bootstrap, serve.input_topic, first)
    prometheus.wait_for(f"sum(sf_records_total) >= {len(first)}", "readings consumed")
    prometheus.wait_for("sum(sf_forecasts_total) > 0", "forecasts")
    assert not prometheus.query(alerts["ForecasterDeadLetterRate"]), "no dead letter yet"

    # The fault: a burst of malformed records, over a few scrapes, among more readings.
    # (The first scrape of a new reason's series only starts it: rate() sees the increases
    # after it, so a burst within one scrape interval of a never-seen reason goes unseen.)
    consumed, rejected = len(first), 0
    for part in range(4):
        burst: list[tuple[bytes | None, bytes]] = [
            reading(k, i) for i in range(12 + 3 * part, 15 + 3 * part) for k in range(4)
        ]
        burst += [MALFORMED[i % len(MALFORMED)] for i in range(150)]
        produce(kafka_bootstrap, serve.input_topic, burst)
        consumed, rejected = consumed + len(burst), rejected + 150
        prometheus.wait_for(
            f"sum(sf_records_invalid_total) >= {rejected}", f"burst part {part + 1} scraped"
        )
    prometheus.wait_for(f"sum(sf_records_total) >= {consumed}", "burst consumed")
    fired = prometheus.wait_for(alerts["ForecasterDeadLetterRate"], "dead-letter alert", 20)
    assert float(fired[0]["value"][1]) > 0.01

    # Every panel query returns data.
    problems, waited_out, not_scraped, serve_queries = query_every_panel(serve, prometheus)
    assert not problems, "panel queries without data:\n" + "\n".join(problems)
    print("panel queries whose metrics have no series yet:", waited_out or "none")
    print("panel queries of metrics not scraped here (retrain):", len(not_scraped))
    assert len(waited_out) * 4 < serve_queries, f"most panel queries have no series: {waited_out}"
    assert not_scraped, "the dashboard has the retrain worker's panels"
    for expr in variable_expressions():
        assert prometheus.query(substitute_variables(expr)), f"variable query {expr}"

    # The online figures carry the served version: the accuracy alerts' join on
    # sf_model_info finds them (thresholds relaxed: this model is untrained).
    skill_expr = alerts["ForecastSkillBelowZero"]
    for threshold in ("sf_online_skill < 0", ">= 100"):
        assert threshold in skill_expr, f"ForecastSkillBelowZero no longer has {threshold!r}"
    served = skill_expr.replace("sf_online_skill < 0", "sf_online_skill").replace(">= 100", ">= 1")
    assert prometheus.wait_for(served, "online skill of the served model version", 20)

    # Every alert expression evaluates; on this healthy stream only the provoked one holds.
    results = {name: prometheus.query(expr) for name, expr in alerts.items()}
    assert results["ForecasterDeadLetterRate"]
    for healthy in (
        *("ForecasterNoForecasts", "ForecasterNoModel", "ForecasterCommitFailures"),
        "ModelBundlesRejected",
    ):
        assert not results[healthy], f"{healthy} holds on a healthy stream: {results[healthy]}"
    assert not results["ForecasterDown"]
    rules = prometheus.get("/api/v1/rules")["data"]["groups"]
    loaded = {r["name"]: r for g in rules for r in g["rules"]}
    assert set(loaded) == set(alerts)
    assert all(r["health"] in ("ok", "unknown") for r in loaded.values()), loaded

    # Down: serve stops, the next scrape fails.
    status, _ = serve.terminate()
    assert status == 0
    down = prometheus.wait_for(alerts["ForecasterDown"], "ForecasterDown after serve stopped", 15)
    assert down[0]["metric"]["instance"] == f"127.0.0.1:{serve.port}"
