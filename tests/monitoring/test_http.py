"""The metrics and probe endpoints: routes, and bounds a client cannot stretch."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from stream_forecaster.monitoring.http import MAX_HEAD_BYTES, HttpEndpoints
from stream_forecaster.settings import ConfigError
from tests.harness.bundles import untrained_bundle
from tests.harness.serve_process import ServeProcess


def failing_probe() -> tuple[bool, str]:
    raise RuntimeError("probe broke")


@pytest.fixture
def endpoints() -> Iterator[HttpEndpoints]:
    registry = CollectorRegistry()
    Counter("sf_things", "Things.", registry=registry).inc(3)
    http = HttpEndpoints(
        "127.0.0.1",
        0,
        registry,
        alive=lambda: (True, "main loop alive"),
        ready=lambda: (False, "no partitions assigned"),
        max_connections=8,
        request_timeout_s=0.5,
    ).start()
    yield http
    http.stop()


def get(http: HttpEndpoints, path: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{http.port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_routes_answer_with_metrics_and_probes(endpoints: HttpEndpoints) -> None:
    status, body = get(endpoints, "/metrics")
    assert status == 200
    assert b"sf_things_total 3.0" in body
    assert get(endpoints, "/healthz") == (200, b"main loop alive\n")
    assert get(endpoints, "/readyz?verbose=1") == (503, b"no partitions assigned\n")
    assert get(endpoints, "/nothing")[0] == 404
    assert get(endpoints, "/metrics", method="POST")[0] == 405
    assert get(endpoints, "/healthz", method="HEAD") == (200, b"")


def test_a_failing_probe_is_a_500_and_the_server_goes_on() -> None:
    http = HttpEndpoints(
        "127.0.0.1", 0, CollectorRegistry(), alive=failing_probe, ready=failing_probe
    ).start()
    try:
        assert get(http, "/healthz") == (500, b"internal error\n")
        assert get(http, "/metrics")[0] == 200
    finally:
        http.stop()


def test_a_port_in_use_is_one_line_naming_the_settings() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            HttpEndpoints(
                "127.0.0.1",
                port,
                CollectorRegistry(),
                alive=lambda: (True, ""),
                ready=lambda: (True, ""),
            )
    assert str(info.value) == (
        f"cannot serve metrics on 127.0.0.1:{port} (SF_METRICS__HOST, SF_METRICS__PORT): "
        "Address already in use"
    )


def connect(http: HttpEndpoints) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", http.port), timeout=30)
    return client


def closed_by_server(client: socket.socket) -> bool:
    """Whether the server closed ``client`` without an answer (waits for it)."""
    try:
        return client.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_an_idle_connection_is_closed_without_an_answer(endpoints: HttpEndpoints) -> None:
    with connect(endpoints) as idle:
        idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never the end of the head
        assert closed_by_server(idle)  # after request_timeout_s


def test_a_head_over_the_limit_is_closed_without_an_answer(endpoints: HttpEndpoints) -> None:
    with connect(endpoints) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\nX-Padding: " + b"a" * MAX_HEAD_BYTES)
        assert closed_by_server(client)


def test_a_flood_of_idle_connections_takes_no_threads_and_the_probe_gets_in(
    endpoints: HttpEndpoints,
) -> None:
    threads = threading.active_count()
    flood = [connect(endpoints) for _ in range(50)]  # max_connections is 8
    try:
        for client in flood:
            client.sendall(b"GET /")
        assert get(endpoints, "/healthz") == (200, b"main loop alive\n")
        assert threading.active_count() <= threads + 1  # urllib's, at most
        for client in flood[:42]:  # the oldest made room for the newer ones
            assert closed_by_server(client)
    finally:
        for client in flood:
            client.close()


@pytest.mark.kafka
def test_3000_idle_connections_to_serve_cause_no_rebalance(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Two members of one group; 3,000 idle connections to one's metrics port for twice the
    session timeout: its heartbeat goes on (no member loses its partition) and its probe
    answers throughout."""
    models = tmp_path / "models"
    untrained_bundle().save(models)
    input_topic, output_topic, dead_letter_topic = new_topic(2), new_topic(2), new_topic(1)
    group = f"flood-{time.monotonic_ns()}"
    members = [
        ServeProcess(
            bootstrap=kafka_bootstrap,
            model_path=models,
            log_path=tmp_path / f"serve-{name}.log",
            group_id=group,
            input_topic=input_topic,
            output_topic=output_topic,
            dead_letter_topic=dead_letter_topic,
        )
        for name in ("a", "b")
    ]
    flood: list[socket.socket] = []
    try:
        for member in members:
            member.start()
        for member in members:
            member.wait_ready()
        for member in members:  # both hold a partition: the group is settled
            member.wait_metric("sf_assigned_partitions", 1.0)
        assignments = [m.log_path.read_text().count("partitions assigned:") for m in members]

        target = members[0]
        for _ in range(3000):
            with contextlib.suppress(OSError):  # the server closes the oldest at its cap
                flood.append(socket.create_connection(("127.0.0.1", target.port), timeout=30))
        deadline = time.monotonic() + 2 * 10  # twice the session timeout (10 s)
        while time.monotonic() < deadline:  # a duration to ride out, probed meanwhile
            assert target.get("/healthz")[0] == 200
            time.sleep(1)

        assert [m.log_path.read_text().count("partitions assigned:") for m in members] == (
            assignments
        )
        for member in members:
            assert member.metric("sf_assigned_partitions") == 1.0
            assert member.get("/readyz")[0] == 200
    finally:
        for client in flood:
            client.close()
        for member in members:
            member.close()
