"""Waiting for the cluster at start-up: what keeps a client from talking to it (no
connection, the TLS handshake, authentication), said once, and tried again with back-off
until the brokers answer.

Each try checks, in order: a TCP connection to each bootstrap server; the TLS handshake
with the configured CA and client certificate (for ``SSL`` and ``SASL_SSL``); then a
metadata request by a real client, which covers SASL. Only the last step makes a
kafka-python client, and only once a broker accepts connections (a client that cannot
bootstrap costs kafka-python 3.0 a thread).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from stream_forecaster.kafka.clients import client_config
from stream_forecaster.settings import KafkaSettings

log = logging.getLogger(__name__)

#: The longest pause between two tries.
MAX_BACKOFF_S: Final = 30.0
_TLS_SETTINGS: Final = "SF_KAFKA__SSL_CAFILE, SF_KAFKA__SSL_CHECK_HOSTNAME, SF_KAFKA__SSL_CERTFILE"
_SASL_SETTINGS: Final = (
    "SF_KAFKA__SASL_MECHANISM, SF_KAFKA__SASL_PLAIN_USERNAME, SF_KAFKA__SASL_PLAIN_PASSWORD"
)


def why_unavailable(
    kafka: KafkaSettings, timeout_s: float = 5.0, stop: threading.Event | None = None
) -> str | None:
    """Why a client cannot talk to the cluster, in one line naming the settings to check;
    ``None`` when a broker answers a metadata request.

    Args:
        kafka: the cluster's addresses and TLS/SASL settings.
        timeout_s: for each connection, handshake and the metadata request.
        stop: when set, the servers not tried yet are skipped.
    """
    refused = []
    for server in kafka.bootstrap_servers.split(","):
        if stop is not None and stop.is_set():
            break
        host, _, port = server.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout_s) as sock:
                if kafka.security_protocol in ("SSL", "SASL_SSL"):
                    _handshake(sock, host, kafka, timeout_s)
        except ssl.SSLError as exc:
            return f"the TLS handshake with {server} failed: {_ssl_reason(exc)} ({_TLS_SETTINGS})"
        except OSError as exc:  # refused, timed out, name not resolved
            refused.append(f"{server}: {exc.strerror or exc}")
            continue
        return _metadata_problem(kafka, timeout_s)
    if not refused:
        return "stopped"
    return (
        f"no broker accepts connections ({'; '.join(refused)}); check "
        "SF_KAFKA__BOOTSTRAP_SERVERS and that the brokers run"
    )


def wait_for_cluster(
    kafka: KafkaSettings,
    stop: threading.Event,
    who: str,
    on_wait: Callable[[str], None] = lambda _reason: None,
) -> bool:
    """Try until the cluster answers; ``False`` when ``stop`` is set first.

    Logs a warning with the reason when it first has to wait and whenever the reason
    changes, and one line when the cluster answers after a wait.

    Args:
        kafka: the cluster.
        stop: set to give up (SIGTERM, Ctrl-C).
        who: the command, for the log.
        on_wait: told the reason at every failed try (for readiness and liveness).
    """
    said: str | None = None
    delay, started = 1.0, time.monotonic()
    while not stop.is_set():
        # Short steps: SIGTERM waits for the step under way (a connection, a handshake).
        reason = why_unavailable(kafka, timeout_s=2.0, stop=stop)
        if reason is None:
            if said is not None:
                log.info(
                    "%s: Kafka at %s answers after %.0f s",
                    who,
                    kafka.bootstrap_servers,
                    time.monotonic() - started,
                )
            return True
        if reason != said:
            log.warning(
                "%s: waiting for Kafka at %s: %s; trying again, every %.0f s at most",
                who,
                kafka.bootstrap_servers,
                reason,
                MAX_BACKOFF_S,
            )
            said = reason
        on_wait(reason)
        stop.wait(delay)
        delay = min(MAX_BACKOFF_S, delay * 2)
    return False


def _handshake(sock: socket.socket, host: str, kafka: KafkaSettings, timeout_s: float) -> None:
    context = ssl.create_default_context(cafile=_path(kafka.ssl_cafile))
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile is not None:
        password = kafka.ssl_password.get_secret_value() if kafka.ssl_password else None
        context.load_cert_chain(
            str(kafka.ssl_certfile), _path(kafka.ssl_keyfile), password=password
        )
    sock.settimeout(timeout_s)
    with context.wrap_socket(sock, server_hostname=host):
        pass  # the handshake happens on wrapping


def _path(path: object | None) -> str | None:
    return None if path is None else str(path)


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    return exc.reason or str(exc)


def _metadata_problem(kafka: KafkaSettings, timeout_s: float) -> str | None:
    """A real client's metadata request: ``None`` if answered, else why not."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    with _failures() as failures:
        try:
            consumer = KafkaConsumer(
                **client_config(kafka),
                group_id=None,
                enable_auto_commit=False,  # else kafka-python warns that it disables it
                bootstrap_timeout_ms=int(timeout_s * 1000),
            )
            try:
                consumer.topics()
            finally:
                consumer.close()
            return None
        except (KafkaError, OSError) as exc:
            failure = next((f for f in failures if "Sasl" in f or "uthenticat" in f), None)
            if failure is not None:
                return f"SASL authentication failed: {failure} ({_SASL_SETTINGS})"
            return (
                f"a broker accepts connections but does not answer Kafka requests ({exc}); "
                "check SF_KAFKA__SECURITY_PROTOCOL against the listener"
            )


@contextmanager
def _failures() -> Iterator[list[str]]:
    """The reasons kafka-python logs for its failed connections meanwhile (the only place
    that tells an authentication failure from the rest), kept out of the log: the wait
    says it once."""
    found: list[str] = []

    class Collect(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            if record.levelno < logging.WARNING:
                return True
            found.append(record.getMessage().rpartition(">: ")[2])  # less the connection
            return False

    names = ("kafka.net.manager", "kafka.net.connection", "kafka.net.transport")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    collect = Collect()
    for logger in loggers:
        logger.addFilter(collect)
        # configure_logging quiets some of them (CRITICAL): their warnings must still be
        # made to be collected here (the filter keeps them out of the log).
        if logger.getEffectiveLevel() > logging.WARNING:
            logger.setLevel(logging.WARNING)
    try:
        yield found
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeFilter(collect)
            logger.setLevel(level)
