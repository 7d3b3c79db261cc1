"""The model topic: promoted bundles handed from retrain (or ``models promote``) to serve.

A compacted topic with one partition: key = the model name (``SF_MODEL__NAME``, UTF-8),
value = the bundle's bytes, headers ``sf.version``, ``sf.release`` and, when signed,
``sf.signature`` (see :mod:`~stream_forecaster.model.signing`). Compaction keeps the newest
bundle per model name: a forecaster that starts reads the topic to its end and serves the
newest bundle for its name, then every one published after it.

:class:`ModelFollower` does that on a background thread with its own consumer (no group, no
commits). Each bundle is checked before it is handed over: size, checksum and contents
(``oversized``, ``damaged``), then, with verification on, the signature of its release
(``unsigned``, ``forged``, ``other_model``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from stream_forecaster.kafka.clients import client_config, reachable
from stream_forecaster.kafka.errors import ClusterError
from stream_forecaster.kafka.topics import TopicError, TopicSpec, ensure_topic
from stream_forecaster.model.bundle import BundleError, ModelBundle
from stream_forecaster.model.signing import (
    MAX_SIGNATURE_CHARS,
    PROMOTE,
    Offer,
    SignatureError,
    Verifier,
)
from stream_forecaster.model.weights import MAX_BUNDLE_BYTES
from stream_forecaster.settings import Settings

log = logging.getLogger(__name__)

VERSION_HEADER: Final = "sf.version"
SIGNATURE_HEADER: Final = "sf.signature"
#: ``promote``, or ``rollback from <version>``: what the signature was made for.
RELEASE_HEADER: Final = "sf.release"
# Room for the record's key, headers and batch overhead on top of the bundle.
_MAX_MESSAGE_BYTES: Final = MAX_BUNDLE_BYTES + 64 * 1024
TOPIC_CONFIG: Final = {
    "cleanup.policy": "compact",
    "max.message.bytes": str(_MAX_MESSAGE_BYTES),
    "segment.ms": str(3600 * 1000),
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": str(24 * 3600 * 1000),
}
_PUBLISH_TIMEOUT_S: Final = 30.0
_TOPIC_CHECK_S: Final = 3.0
_POLL_MS: Final = 250
_FOLLOWER_BOOTSTRAP_MS: Final = 2000
_PUBLISH_BOOTSTRAP_MS: Final = 10_000


class ModelTopicError(ClusterError):
    """The model topic cannot be created or written (brokers unreachable, refused)."""


def ensure_model_topic(settings: Settings) -> str:
    """Create the model topic when missing (one partition, compacted, 16 MB records).

    Returns:
        The topic's name.

    Raises:
        ModelTopicError: the brokers cannot be reached or refuse.
    """
    topic = settings.topics.models
    spec = TopicSpec(topic, 1, TOPIC_CONFIG, purpose="model topic")
    try:
        ensure_topic(settings.kafka, spec, bootstrap_timeout_ms=_PUBLISH_BOOTSTRAP_MS)
    except TopicError as exc:
        raise ModelTopicError(str(exc)) from None
    return topic


def publish_bundle(
    settings: Settings,
    bundle: ModelBundle,
    signature: str | None,
    *,
    data: bytes | None = None,
    release: str = PROMOTE,
) -> None:
    """Publish ``bundle`` under ``settings.model.name`` and wait until the brokers have it.

    Creates the topic first when it is missing (never left to broker auto-creation, which
    would not compact it).

    Args:
        settings: names the cluster, the topic and the model.
        bundle: the model.
        signature: the signature of this release, or ``None`` (unsigned).
        data: the exact bytes to publish (what the signature covers); default
            ``bundle.to_bytes()``.
        release: ``promote``, or ``rollback from <version>``.

    Raises:
        BundleError: the bundle is larger than the topic accepts.
        ModelTopicError: the brokers cannot be reached or did not acknowledge it.
    """
    value = bundle.to_bytes() if data is None else data
    if len(value) > MAX_BUNDLE_BYTES:
        raise BundleError(
            f"bundle {bundle.version} is {len(value)} bytes; the model topic takes at most "
            f"{MAX_BUNDLE_BYTES}"
        )
    topic = ensure_model_topic(settings)
    headers = [(VERSION_HEADER, bundle.version.encode()), (RELEASE_HEADER, release.encode())]
    headers += [(SIGNATURE_HEADER, signature.encode())] if signature is not None else []
    try:
        producer = KafkaProducer(
            **client_config(settings.kafka),
            acks="all",
            enable_idempotence=True,
            max_request_size=_MAX_MESSAGE_BYTES,
            bootstrap_timeout_ms=_PUBLISH_BOOTSTRAP_MS,
        )
    except KafkaError as exc:
        raise ModelTopicError(
            f"cannot reach the Kafka brokers at {settings.kafka.bootstrap_servers} "
            f"(SF_KAFKA__BOOTSTRAP_SERVERS): {exc!r}"
        ) from None
    try:
        future = producer.send(
            topic, key=settings.model.name.encode("utf-8"), value=value, headers=headers
        )
        producer.flush(timeout=_PUBLISH_TIMEOUT_S)
        metadata = future.get(timeout=_PUBLISH_TIMEOUT_S)
    except KafkaError as exc:
        raise ModelTopicError(
            f"cannot publish model {bundle.version} to {topic}: {exc!r}"
        ) from None
    finally:
        producer.close(timeout=5)
    log.info(
        "published model %s (%s, %s, %d bytes, %s) to %s[%d]@%d",
        bundle.version,
        settings.model.name,
        release,
        len(value),
        "signed" if signature else "unsigned",
        topic,
        metadata.partition,
        metadata.offset,
    )


class ModelFollower:
    """Follows the model topic on a background thread and hands over each valid bundle.

    At start-up it reads the topic from the beginning to its end and hands over the newest
    bundle for ``settings.model.name`` (if any); after that, every new one. Records of other
    model names are ignored. ``on_bundle`` runs on the follower's thread, so the caller can
    prepare the model there (e.g. compile it) without stalling its own loop; an exception
    it raises is logged and the follower goes on. A bundle that fails its checks is logged
    with what was received and what was expected, and reported through ``on_reject``.

    The thread never dies of a Kafka failure: an unreachable cluster is logged and retried
    with back-off (up to ``SF_STATE__RETRY_BACKOFF_MAX_S``), a missing topic is waited for.

    Args:
        settings: cluster, ``topics.models``, ``model.name``, the keys.
        on_bundle: called with each verified bundle and its release.
        on_reject: called with ``(reason, detail)``, reason ``unsigned``, ``forged``,
            ``other_model``, ``oversized`` or ``damaged``.
        verifier: what signatures are trusted; default: the one ``settings`` describe.
    """

    def __init__(
        self,
        settings: Settings,
        on_bundle: Callable[[Offer], None],
        on_reject: Callable[[str, str], None],
        verifier: Verifier | None = None,
    ) -> None:
        self.topic = settings.topics.models
        self.name = settings.model.name
        self._key = self.name.encode("utf-8")
        self._verifier = verifier or Verifier.from_settings(settings.model)
        self._on_bundle = on_bundle
        self._on_reject = on_reject
        self._backoff_max_s = settings.state.retry_backoff_max_s
        self._bootstrap = settings.kafka.bootstrap_servers
        self._config: dict[str, Any] = {
            **client_config(settings.kafka),
            "client_id": f"{settings.kafka.client_id}-models",
            "group_id": None,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "allow_auto_create_topics": False,
            "fetch_max_bytes": 2 * _MAX_MESSAGE_BYTES,
            "max_partition_fetch_bytes": _MAX_MESSAGE_BYTES,
            "fetch_max_wait_ms": _POLL_MS,
            # Short bootstrap attempts keep stop() prompt while the brokers are down (the
            # thread retries with its own back-off); reconnects are tried at least that often.
            "bootstrap_timeout_ms": _FOLLOWER_BOOTSTRAP_MS,
            "reconnect_backoff_max_ms": max(1000, int(self._backoff_max_s * 1000)),
        }
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._positions: dict[TopicPartition, int] = {}
        self._newest: Any = None  # the newest own record seen while catching up
        self._thread = threading.Thread(target=self._run, name="model-follower", daemon=True)

    def start(self) -> ModelFollower:
        """Start following; returns ``self``."""
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait for it (at most ``timeout_s``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)

    def wait_caught_up(self, timeout_s: float | None = None) -> bool:
        """Wait until the start-up read reached the topic's end (and the newest bundle, if
        any, was handed over); returns whether it did."""
        return self._caught_up.wait(timeout_s)

    @property
    def caught_up(self) -> bool:
        return self._caught_up.is_set()

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        backoff_s = 0.5
        consumer: Any = None
        said_unreachable, failure = False, ""
        while not self._stop.is_set():
            try:
                if consumer is None and not reachable(self._config["bootstrap_servers"]):
                    # No client while no broker accepts connections: each one that cannot
                    # bootstrap logs a burst of errors (and costs kafka-python a thread).
                    if not said_unreachable:
                        log.info("model follower: waiting for Kafka at %s", self._bootstrap)
                        said_unreachable = True
                    self._stop.wait(backoff_s)
                    backoff_s = min(backoff_s * 2, self._backoff_max_s)
                    continue
                if consumer is None:
                    consumer = KafkaConsumer(**self._config)
                    backoff_s = 0.5
                self._follow(consumer)
            except Exception as exc:  # a follower thread must never die
                said, failure = failure, repr(exc)
                log.log(
                    logging.DEBUG if failure == said else logging.WARNING,  # once per cause
                    "model follower: Kafka failure on %s at %s: %s; retrying, every %.0fs at most",
                    self.topic,
                    self._bootstrap,
                    failure,
                    self._backoff_max_s,
                )
                if consumer is not None:
                    _close(consumer)
                    consumer = None
                self._stop.wait(backoff_s)
                backoff_s = min(backoff_s * 2, self._backoff_max_s)
        if consumer is not None:
            _close(consumer)

    def _follow(self, consumer: Any) -> None:
        tps = self._wait_for_topic(consumer)
        if not tps:
            return  # stopped
        consumer.assign(tps)
        for tp in tps:
            if tp in self._positions:
                consumer.seek(tp, self._positions[tp])
            else:
                consumer.seek_to_beginning(tp)
        if not self._caught_up.is_set():
            self._catch_up(consumer, tps)
        while not self._stop.is_set():
            for tp, records in consumer.poll(timeout_ms=_POLL_MS).items():
                for record in records:
                    self._positions[tp] = record.offset + 1
                    if record.key == self._key:
                        self._deliver(record)

    def _wait_for_topic(self, consumer: Any) -> list[TopicPartition]:
        reported = False
        while not self._stop.is_set():
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                if reported:
                    log.info("model topic %s exists now; following it", self.topic)
                return [TopicPartition(self.topic, p) for p in sorted(partitions)]
            if not reported:
                log.info(
                    "model topic %s does not exist yet at %s; checking every %.0fs "
                    "(retrain or `stream-forecaster models promote` creates it)",
                    self.topic,
                    self._bootstrap,
                    _TOPIC_CHECK_S,
                )
                reported = True
            self._stop.wait(_TOPIC_CHECK_S)
        return []

    def _catch_up(self, consumer: Any, tps: list[TopicPartition]) -> None:
        ends = consumer.end_offsets(tps, timeout_ms=10_000)
        started = time.monotonic()
        while not self._stop.is_set():
            # position() is None while the broker does not answer: still behind.
            behind = [tp for tp in tps if (consumer.position(tp, timeout_ms=2000) or 0) < ends[tp]]
            if not behind:
                break
            for tp, records in consumer.poll(timeout_ms=_POLL_MS).items():
                for record in records:
                    self._positions[tp] = record.offset + 1
                    if record.key == self._key:
                        self._newest = record
        if self._stop.is_set():
            return
        newest, self._newest = self._newest, None
        log.info(
            "model topic %s read to its end in %.1fs: %s",
            self.topic,
            time.monotonic() - started,
            f"newest bundle for {self.name!r} at offset {newest.offset}"
            if newest is not None
            else f"no bundle for {self.name!r} yet",
        )
        if newest is not None:
            self._deliver(newest)
        self._caught_up.set()

    def _deliver(self, record: Any) -> None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        headers = {k: v for k, v in (record.headers or [])}
        announced = _text(headers.get(VERSION_HEADER))
        if record.value is None:
            log.warning("model topic: %s is a tombstone for %r; ignored", where, self.name)
            return
        signature = _text(headers.get(SIGNATURE_HEADER))
        release = _text(headers.get(RELEASE_HEADER)) or PROMOTE
        what = (
            f"model bundle {announced or '(no sf.version header)'} for {self.name!r} at {where} "
            f"({len(record.value)} bytes, {release[:80]}, "
            f"{'signed' if signature else 'unsigned'})"
        )
        try:
            bundle = ModelBundle.from_bytes(record.value, source=what)
            if announced is not None and announced != bundle.version:
                raise BundleError(
                    f"{what}: header {VERSION_HEADER} says {announced}, but the bundle "
                    f"holds version {bundle.version}"
                )
            self._verifier.verify(
                record.value,
                signature,
                name=self.name,
                version=bundle.version,
                release=release,
                bundle_name=bundle.manifest.name,
            )
        except SignatureError as exc:
            self._reject(exc.reason, f"{what}: {exc}")
            return
        except BundleError as exc:  # damaged, or oversized
            self._reject(exc.reason, str(exc))
            return
        log.info("model topic: %s verified; handing it over", what)
        try:
            self._on_bundle(Offer(bundle, release))
        except Exception:
            log.exception("model follower: on_bundle failed for %s", bundle.version)

    def _reject(self, reason: str, detail: str) -> None:
        log.error("rejected %s bundle from the model topic: %s", reason, detail)
        try:
            self._on_reject(reason, detail)
        except Exception:
            log.exception("model follower: on_reject failed")


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value[:MAX_SIGNATURE_CHARS].decode("utf-8", errors="replace")


def _close(consumer: Any) -> None:
    try:
        consumer.close(autocommit=False, timeout_ms=2000)
    except Exception as exc:
        log.debug("closing the model follower's consumer: %r", exc)
