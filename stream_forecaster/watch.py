"""``stream-forecaster watch``: a live console view of running forecasters.

Every interval it scrapes the ``/metrics`` of one or more ``serve`` processes (summed) and
shows, over that interval: forecasts and records per second, invalid records per second,
end-to-end latency p50/p99 and inference p99 (from histogram bucket deltas, the way
Prometheus' ``histogram_quantile`` computes them), active keys, consumer lag, the model
version; and the latest forecasts read from the output topic. On a terminal the screen is
redrawn in place; otherwise (logs, pipes) it prints one line per interval.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import time
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.messages import format_timestamp
from stream_forecaster.settings import Settings

Buckets = dict[float, float]  # upper bound -> cumulative count


@dataclass
class Snapshot:
    """The metrics of all scraped instances at one moment, summed."""

    at: float
    up: int = 0
    down: int = 0
    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, Buckets] = field(default_factory=dict)
    versions: set[str] = field(default_factory=set)


_COUNTERS = ("sf_forecasts_total", "sf_records_total", "sf_records_invalid_total")
_GAUGES = ("sf_active_keys", "sf_consumer_lag_records", "sf_model_loaded")
_HISTOGRAMS = ("sf_end_to_end_latency_seconds", "sf_inference_seconds")


def parse(text: str, snapshot: Snapshot) -> None:
    """Add one instance's exposition ``text`` to ``snapshot``."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in _COUNTERS:
                snapshot.counters[s.name] = snapshot.counters.get(s.name, 0.0) + s.value
            elif s.name in _GAUGES:
                snapshot.gauges[s.name] = snapshot.gauges.get(s.name, 0.0) + s.value
            elif s.name.endswith("_bucket") and s.name[: -len("_bucket")] in _HISTOGRAMS:
                buckets = snapshot.histograms.setdefault(s.name[: -len("_bucket")], {})
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name == "sf_model_info" and s.value == 1:
                snapshot.versions.add(s.labels["version"])


def scrape(urls: list[str], timeout: float = 2.0) -> Snapshot:
    """Scrape every URL; an unreachable one is counted as down, never raised."""
    snapshot = Snapshot(at=time.monotonic())
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                parse(response.read().decode("utf-8"), snapshot)
            snapshot.up += 1
        except (OSError, ValueError):
            snapshot.down += 1
    return snapshot


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding
    the q-th observation; the +Inf bucket answers with the highest finite bound."""
    ordered = sorted(buckets.items())
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return None


def _delta(new: Buckets, old: Buckets) -> Buckets:
    diff = {le: count - old.get(le, 0.0) for le, count in new.items()}
    return new if any(v < 0 for v in diff.values()) else diff  # a restart resets counters


def summarize(previous: Snapshot, current: Snapshot) -> dict[str, Any]:
    """Rates and quantiles over the interval between two snapshots."""
    seconds = max(current.at - previous.at, 1e-9)

    def rate(name: str) -> float:
        change = current.counters.get(name, 0.0) - previous.counters.get(name, 0.0)
        return (change if change >= 0 else current.counters.get(name, 0.0)) / seconds

    latency = _delta(
        current.histograms.get(_HISTOGRAMS[0], {}), previous.histograms.get(_HISTOGRAMS[0], {})
    )
    inference = _delta(
        current.histograms.get(_HISTOGRAMS[1], {}), previous.histograms.get(_HISTOGRAMS[1], {})
    )
    return {
        "forecasts_per_s": rate("sf_forecasts_total"),
        "records_per_s": rate("sf_records_total"),
        "invalid_per_s": rate("sf_records_invalid_total"),
        "latency_p50": histogram_quantile(0.5, latency),
        "latency_p99": histogram_quantile(0.99, latency),
        "inference_p99": histogram_quantile(0.99, inference),
        "keys": int(current.gauges.get("sf_active_keys", 0)),
        "lag": int(current.gauges.get("sf_consumer_lag_records", 0)),
        "loaded": current.gauges.get("sf_model_loaded", 0) > 0,
        "versions": sorted(current.versions),
        "up": current.up,
        "down": current.down,
    }


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def format_line(s: dict[str, Any]) -> str:
    """The one-line form of a summary."""
    model = ", ".join(s["versions"]) if s["loaded"] else "waiting for a model"
    down = f", {s['down']} instance(s) down" if s["down"] else ""
    return (
        f"watch: {s['forecasts_per_s']:.1f} forecasts/s, {s['records_per_s']:.1f} records/s, "
        f"{s['invalid_per_s']:.1f} invalid/s, latency p50 {_ms(s['latency_p50'])} "
        f"p99 {_ms(s['latency_p99'])}, inference p99 {_ms(s['inference_p99'])}, "
        f"{s['keys']} keys, lag {s['lag']}, model {model}{down}"
    )


def format_forecast(f: dict[str, Any]) -> str:
    return (
        f"{f['key']} {format_timestamp(f['ts'])} {f['target']}={f['forecast']:.2f} "
        f"(model {f['model_version']})"
    )


class LatestForecasts:
    """The newest forecasts on the output topic, read from its end without a group."""

    def __init__(self, settings: Settings, keep: int) -> None:
        self.settings = settings
        self.latest: deque[dict[str, Any]] = deque(maxlen=keep)
        self._consumer: Any = None

    def poll(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        topic = self.settings.topics.output
        if self._consumer is None:
            consumer = KafkaConsumer(
                **self.settings.kafka.client_config(),
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                consumer.close()
                return  # not created yet: try again next interval
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            consumer.seek_to_end()
            self._consumer = consumer
        for records in self._consumer.poll(timeout_ms=50).values():
            for record in records:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    self.latest.append(json.loads(record.value))

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    urls = args.metrics_url or [f"http://127.0.0.1:{settings.metrics.port}/metrics"]
    tty = sys.stdout.isatty() and not args.plain
    forecasts = None if args.no_forecasts else LatestForecasts(settings, args.forecasts)
    signal.signal(signal.SIGTERM, _interrupt)
    stop_at = time.monotonic() + args.duration if args.duration else math.inf
    previous = scrape(urls)
    try:
        while time.monotonic() < stop_at:
            time.sleep(args.interval)  # the refresh period of the view
            current = scrape(urls)
            summary = summarize(previous, current)
            previous = current
            if forecasts is not None:
                with contextlib.suppress(Exception):  # the topic may not exist yet
                    forecasts.poll()
            latest = list(forecasts.latest) if forecasts else []
            if tty:
                screen = [
                    f"stream-forecaster watch  {time.strftime('%H:%M:%S')}  "
                    f"({len(urls)} instance(s); Ctrl-C to stop)",
                    "",
                    format_line(summary).removeprefix("watch: "),
                    "",
                    "latest forecasts:",
                ]
                screen += [f"  {format_forecast(f)}" for f in reversed(latest)]
                sys.stdout.write("\x1b[2J\x1b[H" + "\n".join(screen) + "\n")
            else:
                print(format_line(summary))
                if latest:
                    print(f"watch: latest {format_forecast(latest[-1])}")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if forecasts is not None:
            forecasts.close()
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register the ``watch`` subcommand."""
    p = sub.add_parser(
        "watch",
        parents=[common],
        help="live console view of running forecasters: throughput, latency, keys, forecasts",
        description=__doc__.split("\n\n", 1)[1].replace("\n", " "),
    )
    p.add_argument(
        "--metrics-url",
        action="append",
        metavar="URL",
        help="a serve process's /metrics; repeat for several (summed); default "
        "http://127.0.0.1:<SF_METRICS__PORT>/metrics",
    )
    p.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    p.add_argument(
        "--forecasts", type=int, default=8, metavar="N", help="latest forecasts shown (default 8)"
    )
    p.add_argument("--no-forecasts", action="store_true", help="do not read the output topic")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--plain", action="store_true", help="one line per interval, even on a terminal")
    p.set_defaults(handler=run_command)
