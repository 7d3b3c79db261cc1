"""Replaying a feed into the input topic: readings paced, a share replaced by malformed
records, sent with progress every few seconds, flushed and reported at the end."""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import threading
import time
from typing import Any, Final

from stream_forecaster.kafka.availability import wait_for_cluster
from stream_forecaster.kafka.clients import client_config
from stream_forecaster.settings import ConfigError, Settings
from stream_forecaster.simulate.feed import LiveStamps, readings, timestamp_shift
from stream_forecaster.simulate.malformed import is_malformed, malformed_record
from stream_forecaster.simulate.pacing import Pacer
from stream_forecaster.simulate.sources import load_feed
from stream_forecaster.wire.readings import encode_reading
from stream_forecaster.wire.timestamps import format_timestamp

log = logging.getLogger(__name__)

PROGRESS_EVERY_S: Final = 5.0


class _Counts:
    """What was sent; send failures are counted on the producer's thread."""

    def __init__(self, total: int | None) -> None:
        self.total, self.good, self.bad, self.errors = total, 0, 0, 0
        self.data_ts: int | None = None
        self._lock = threading.Lock()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = self.errors == 1
        if first:
            log.error("send failed (further failures are only counted): %r", exc)

    def report(self, rate: float) -> str:
        sent = self.good + self.bad
        done = f", {100 * sent / self.total:.1f}% done" if self.total else ""
        reached = "-" if self.data_ts is None else format_timestamp(self.data_ts)
        return (
            f"sent {sent} records ({self.good} readings, {self.bad} malformed), "
            f"{self.errors} send errors, {rate:.1f}/s, data time {reached}{done}"
        )


def replay(args: argparse.Namespace, settings: Settings) -> int:
    """Replay the feed into the input topic; 1 when sends failed, else 0 (also after
    Ctrl-C or SIGTERM, which stop, flush and report)."""
    from kafka.errors import KafkaError

    feed = load_feed(args, settings)
    topic = args.topic or settings.topics.input
    counts = _Counts(args.limit if args.loop else min(args.limit or len(feed), len(feed)))
    producer = _producer(settings)
    pacer = Pacer(None if args.speedup else args.rate or 50.0, args.speedup or 1.0)
    now_ms = time.time_ns() // 1_000_000
    shift = timestamp_shift(feed, args.timestamps, now_ms)
    live = LiveStamps(now_ms) if args.timestamps == "live" else None
    stream = itertools.islice(readings(feed, shift_ms=shift, loop=args.loop), counts.total)
    log.info(
        "replaying %s to topic %s (timestamps %s): keys %s, features %s",
        args.source,
        topic,
        args.timestamps,
        ",".join(feed.keys[:5]) + (",..." if len(feed.keys) > 5 else ""),
        ",".join(feed.features),
    )
    previous = _on_sigterm(_interrupt)
    start = last_time = time.monotonic()
    last_sent = 0
    try:
        for index, (key, data_ts, values) in enumerate(stream):
            pacer.wait(index, data_ts)
            ts = data_ts if live is None else live.stamp(key, pacer.since_start_ms(index, data_ts))
            if is_malformed(index, args.bad_ratio):
                record_key, value, _ = malformed_record(counts.bad, key, ts, values)
                counts.bad += 1
            else:
                record_key, value = encode_reading(key, ts, values)
                counts.good += 1
            try:
                producer.send(topic, key=record_key, value=value).add_errback(counts.failed)
            except KafkaError as exc:  # e.g. the buffer stayed full for max_block_ms
                counts.failed(exc)
            counts.data_ts, now = ts, time.monotonic()
            if now - last_time >= PROGRESS_EVERY_S:
                log.info(counts.report((index + 1 - last_sent) / (now - last_time)))
                last_time, last_sent = now, index + 1
    except KeyboardInterrupt:
        log.info("interrupted: flushing what was sent")
    finally:
        _on_sigterm(previous)
        try:
            producer.flush(timeout=max(10.0, settings.kafka.request_timeout_ms / 1000))
        except KafkaError as exc:
            log.error("flush did not complete, records may be lost: %r", exc)
        producer.close(timeout=10)
    elapsed = time.monotonic() - start
    summary = counts.report((counts.good + counts.bad) / max(elapsed, 1e-9))
    log.info(summary)
    print(f"simulate: {summary}; to topic {topic} in {elapsed:.1f} s")
    return 1 if counts.errors else 0


def _producer(settings: Settings) -> Any:
    """The producer, once the cluster answers (Ctrl-C interrupts the wait: no SIGTERM
    handler yet, nothing to flush)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    wait_for_cluster(settings.kafka, threading.Event(), "simulate")
    try:
        return KafkaProducer(**client_config(settings.kafka), acks="all", linger_ms=5, retries=5)
    except KafkaError as exc:
        raise ConfigError(
            f"cannot connect to Kafka at {settings.kafka.bootstrap_servers}: {exc!r}"
        ) from None


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _on_sigterm(handler: Any) -> Any:
    """Install a SIGTERM handler (main thread only); returns the previous one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)
