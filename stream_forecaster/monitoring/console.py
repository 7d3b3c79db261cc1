"""``stream-forecaster watch``: a live console view of running forecasters.

Every interval it scrapes the ``/metrics`` of one or more ``serve`` processes and shows,
summed over them and computed over that interval: forecasts, records and invalid records
per second, end-to-end latency p50/p99 and inference p99 (from histogram bucket deltas, as
Prometheus' ``histogram_quantile`` does), active keys, consumer lag and the model served;
and the latest forecasts read from the output topic. On a terminal the screen is redrawn
in place; otherwise (logs, pipes) it prints one line per interval.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import math
import signal
import socket
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from stream_forecaster.cli.arguments import positive_float
from stream_forecaster.settings.config import Settings
from stream_forecaster.wire.readings import Forecast, format_timestamp

log = logging.getLogger(__name__)

LATENCY, INFERENCE = "sf_end_to_end_latency_seconds", "sf_inference_seconds"
COUNTERS = ("sf_forecasts_total", "sf_records_total", "sf_records_invalid_total")
GAUGES = ("sf_active_keys", "sf_consumer_lag_records", "sf_model_loaded")
Buckets = dict[float, float]  # upper bound (le) -> cumulative count


@dataclass(frozen=True)
class Snapshot:
    """Metrics of one instance (or several, summed), each summed over its label sets."""

    values: dict[str, float] = field(default_factory=dict)  # COUNTERS and GAUGES
    buckets: dict[str, Buckets] = field(default_factory=dict)  # LATENCY, INFERENCE
    versions: frozenset[str] = frozenset()  # of sf_model_info series whose value is 1


@dataclass(frozen=True)
class Quantiles:
    """p50 and p99 of a histogram, in seconds; ``cumulative``: since the process started,
    as nothing was observed during the interval."""

    p50: float | None
    p99: float | None
    cumulative: bool = False


@dataclass(frozen=True)
class Summary:
    """What one refresh shows, all instances together."""

    forecasts_per_s: float
    records_per_s: float
    invalid_per_s: float
    latency: Quantiles
    inference: Quantiles
    keys: int
    lag: int
    versions: tuple[str, ...]
    loaded: int  # instances with a model loaded
    up: int  # instances scraped
    down: tuple[str, ...]  # URLs that could not be scraped


def parse_metrics(text: str) -> Snapshot:
    """The samples ``watch`` needs from one Prometheus exposition text."""
    values: dict[str, float] = {}
    buckets: dict[str, Buckets] = {}
    versions = set()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            base = s.name.removesuffix("_bucket")
            if s.name in COUNTERS or s.name in GAUGES:
                values[s.name] = values.get(s.name, 0.0) + s.value
            elif base in (LATENCY, INFERENCE) and base != s.name:
                hist, le = buckets.setdefault(base, {}), float(s.labels["le"])
                hist[le] = hist.get(le, 0.0) + s.value
            elif s.name == "sf_model_info" and s.value == 1:
                versions.add(s.labels.get("version", "?"))
    return Snapshot(values, buckets, frozenset(versions))


def scrape(url: str, timeout: float = 2.0) -> Snapshot | None:
    """One instance's metrics, or ``None`` when they cannot be fetched or parsed."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse_metrics(response.read().decode("utf-8"))
    except (OSError, ValueError, http.client.HTTPException):
        return None


def increase(old: Snapshot | None, new: Snapshot) -> Snapshot:
    """What one instance's counters and buckets gained from ``old`` to ``new``.

    A value lower than before means the process restarted: all of it is new. Without
    ``old`` (the instance was down or not yet seen) nothing is counted.
    """
    if old is None:
        return Snapshot()
    gained = {}
    for name in COUNTERS:
        now, before = new.values.get(name, 0.0), old.values.get(name, 0.0)
        gained[name] = now - before if now >= before else now
    buckets = {}
    for name, hist in new.buckets.items():
        diff = {le: n - old.buckets.get(name, {}).get(le, 0.0) for le, n in hist.items()}
        buckets[name] = dict(hist) if any(d < 0 for d in diff.values()) else diff
    return Snapshot(gained, buckets, new.versions)


def combine(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Several instances as one: values and buckets summed, versions joined."""
    values: dict[str, float] = {}
    buckets: dict[str, Buckets] = {}
    versions: frozenset[str] = frozenset()
    for s in snapshots:
        for name, value in s.values.items():
            values[name] = values.get(name, 0.0) + value
        for name, hist in s.buckets.items():
            total = buckets.setdefault(name, {})
            for le, n in hist.items():
                total[le] = total.get(le, 0.0) + n
        versions |= s.versions
    return Snapshot(values, buckets, versions)


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' ``histogram_quantile``; ``None`` where Prometheus answers NaN.

    The bucket holding the q-th observation is found and the answer interpolated linearly
    between its bounds (the first bucket starts at 0, unless its bound is <= 0). In the
    +Inf bucket the answer is the highest finite bound.

    Args:
        q: the quantile, 0 to 1.
        buckets: upper bound -> cumulative count, with +Inf and at least one finite bound.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"expected a quantile between 0 and 1, got {q}")
    ordered = sorted(buckets.items())
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    b = next(i for i, (_, count) in enumerate(ordered) if count >= rank)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, below = ordered[b - 1] if b > 0 else (0.0, 0.0)
    end, count = ordered[b][0], ordered[b][1] - below
    return None if count <= 0 else start + (end - start) * (rank - below) / count  # q = 0


def summarize(
    gained: Snapshot, total: Snapshot, seconds: float, up: int, down: Sequence[str]
) -> Summary:
    """The summary of one interval.

    Args:
        gained: what the counters and buckets of the instances up gained in the interval.
        total: the current metrics of the instances up.
        seconds: the length of the interval.
        up: how many instances were scraped.
        down: the URLs that could not be scraped.
    """

    def quantiles(name: str) -> Quantiles:
        cumulative = histogram_quantile(0.5, gained.buckets.get(name, {})) is None
        hist = (total if cumulative else gained).buckets.get(name, {})
        p50, p99 = histogram_quantile(0.5, hist), histogram_quantile(0.99, hist)
        return Quantiles(p50, p99, cumulative and p50 is not None)

    forecasts, records, invalid = (gained.values.get(n, 0.0) / max(seconds, 1e-9) for n in COUNTERS)
    keys, lag, loaded = (round(total.values.get(n, 0.0)) for n in GAUGES)
    return Summary(
        forecasts_per_s=forecasts,
        records_per_s=records,
        invalid_per_s=invalid,
        latency=quantiles(LATENCY),
        inference=quantiles(INFERENCE),
        keys=keys,
        lag=lag,
        versions=tuple(sorted(total.versions)),
        loaded=loaded,
        up=up,
        down=tuple(down),
    )


# -- rendering -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One refresh: its Unix time, the summary, and the newest forecasts first (``None``
    when the output topic is not read)."""

    at: float
    summary: Summary
    latest: tuple[Forecast, ...] | None


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.{1 if seconds >= 0.001 else 3}f} ms"


def _quantiles(name: str, q: Quantiles, p50: bool = True) -> str:
    shown = f"p50 {_ms(q.p50)} p99 {_ms(q.p99)}" if p50 else f"p99 {_ms(q.p99)}"
    return f"{name} {shown}" + (" (cumulative)" if q.cumulative else "")


def _model(s: Summary) -> str:
    if s.loaded <= 0:
        return "waiting for a model"
    waiting = f" ({s.up - s.loaded} waiting for a model)" if s.up > s.loaded else ""
    return (", ".join(s.versions) or "?") + waiting


def format_line(s: Summary) -> str:
    """The one-line form of a summary, for logs and pipes."""
    if not s.up:
        return f"watch: all metrics endpoints down: {', '.join(s.down)}"
    return (
        f"watch: {s.forecasts_per_s:.1f} forecasts/s, {s.records_per_s:.1f} records/s, "
        f"{s.invalid_per_s:.1f} invalid/s, {_quantiles('latency', s.latency)}, "
        f"{_quantiles('inference', s.inference, p50=False)}, {s.keys} keys, lag {s.lag}, "
        f"model {_model(s)}" + (f", down: {', '.join(s.down)}" if s.down else "")
    )


def _number(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"


def format_forecast(f: Forecast) -> str:
    """``key time target=value (model version)``."""
    when = format_timestamp(f.ts)
    return f"{f.key} {when} {f.target}={_number(f.forecast)} (model {f.model_version})"


def format_plain(frame: Frame) -> list[str]:
    """The summary line, and the newest forecast if there is one."""
    latest = [f"watch: latest {format_forecast(frame.latest[0])}"] if frame.latest else []
    return [format_line(frame.summary), *latest]


def format_screen(frame: Frame, interval: float) -> str:
    """The whole terminal screen: clear, home, header, metrics, latest forecasts."""
    s = frame.summary
    clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.at))
    lines = [f"stream-forecaster watch   {clock}   every {interval:g} s, Ctrl-C stops", ""]
    if s.up:
        lines += [
            f"throughput  {s.forecasts_per_s:.1f} forecasts/s, {s.records_per_s:.1f} "
            f"records/s, {s.invalid_per_s:.1f} invalid/s",
            f"latency     {_quantiles('end to end', s.latency)}, "
            f"{_quantiles('inference', s.inference, p50=False)}",
            f"keys        {s.keys} active, lag {s.lag} records",
            f"model       {_model(s)}",
        ]
    lines.append(f"instances   {s.up} up" + (f", down: {', '.join(s.down)}" if s.down else ""))
    if frame.latest is not None:
        lines += ["", f"{'key':<20} {'for (UTC)':<24} {'target':<10} {'forecast':>12}  model"]
        lines += [
            f"{f.key:<20} {format_timestamp(f.ts):<24} {f.target:<10} "
            f"{_number(f.forecast):>12}  {f.model_version}"
            for f in frame.latest
        ] or ["(no forecasts yet)"]
    return "\x1b[H\x1b[2J" + "\n".join(lines) + "\n"


# -- the loop --------------------------------------------------------------------------------


class LatestForecasts:
    """The newest forecasts on the output topic, read from its end without a consumer group.

    Args:
        settings: the Kafka connection and the output topic.
        keep: how many forecasts to keep.
    """

    RETRY_S = 3.0

    def __init__(self, settings: Settings, keep: int) -> None:
        self.topic, self.config = settings.topics.output, settings.kafka.client_config()
        self.latest: deque[Forecast] = deque(maxlen=keep)
        self._consumer: Any = None
        self._retry_at, self._backoff = 0.0, self.RETRY_S

    def poll(self, budget_s: float = 0.2) -> None:
        """Read what was published since the last call, for about ``budget_s`` at most.

        Never raises: a missing topic or an unreachable broker is tried again later.
        """
        if time.monotonic() < self._retry_at:
            return
        try:
            if self._consumer is None and _reachable(self.config["bootstrap_servers"]):
                self._consumer = self._connect()
            if self._consumer is not None and self._assigned():
                self._drain(budget_s)
                self._backoff = self.RETRY_S
                return
        except Exception:  # kafka-python raises many types; the view goes on regardless
            log.debug("cannot read topic %s", self.topic, exc_info=True)
            self.close()
            self._backoff = min(60.0, 2 * self._backoff)  # each failed client leaks a thread
        self._retry_at = time.monotonic() + self._backoff

    def _connect(self) -> Any:
        from kafka import KafkaConsumer

        return KafkaConsumer(
            **self.config,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            bootstrap_timeout_ms=2000,
            max_poll_records=5000,
        )

    def _assigned(self) -> bool:
        """Assign every partition of the topic, at its end, once it exists."""
        from kafka import TopicPartition

        if not self._consumer.assignment():
            partitions = self._consumer.partitions_for_topic(self.topic)
            if not partitions:  # not created yet
                return False
            self._consumer.assign([TopicPartition(self.topic, p) for p in sorted(partitions)])
            self._consumer.seek_to_end()
        return True

    def _drain(self, budget_s: float) -> None:
        deadline, records = time.monotonic() + budget_s, []
        while (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
            polled = self._consumer.poll(timeout_ms=left_ms)
            if not polled:
                break
            records += [r for batch in polled.values() for r in batch]
        records.sort(key=lambda r: int(r.timestamp))
        for record in records[-(self.latest.maxlen or 1) :]:
            try:
                self.latest.append(Forecast.model_validate_json(record.value))
            except ValueError:  # not a forecast: skipped
                continue

    def newest(self) -> tuple[Forecast, ...]:
        """The forecasts kept, newest first."""
        return tuple(reversed(self.latest))

    def close(self) -> None:
        """Close the consumer; the next poll opens a new one."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _reachable(servers: Sequence[str]) -> bool:
    """Whether a bootstrap server accepts connections (kafka-python 3.0 leaks a thread for
    each client that cannot bootstrap: a down broker must not cost one per retry)."""
    for server in servers:
        host, _, port = server.rpartition(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), 1.0):
            return True
    return False


def observe(
    urls: Sequence[str], interval: float, forecasts: LatestForecasts | None = None
) -> Iterator[Frame]:
    """One frame per ``interval`` seconds, endlessly: the caller stops iterating.

    Args:
        urls: the ``/metrics`` URLs of the instances, summed.
        interval: seconds between refreshes; rates and quantiles cover exactly that span.
        forecasts: the output topic reader, or ``None`` not to read it.
    """
    timeout = min(2.0, max(0.2, interval))
    previous = {url: scrape(url, timeout) for url in urls}
    last = time.monotonic()
    while True:
        time.sleep(max(0.0, last + interval - time.monotonic()))  # the refresh period
        current = {url: scrape(url, timeout) for url in urls}
        now = time.monotonic()
        up = {url: s for url, s in current.items() if s is not None}
        gained = combine(increase(previous[url], s) for url, s in up.items())
        down = [url for url in urls if url not in up]
        summary = summarize(gained, combine(up.values()), now - last, len(up), down)
        previous, last = current, now
        if forecasts is not None:
            forecasts.poll()
        yield Frame(time.time(), summary, None if forecasts is None else forecasts.newest())


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace, settings: Settings) -> int:
    """``stream-forecaster watch``: frames until --duration, Ctrl-C or SIGTERM; returns 0."""
    urls = args.metrics_url or [f"http://127.0.0.1:{settings.metrics.port}/metrics"]
    forecasts = None if args.no_forecasts else LatestForecasts(settings, args.forecasts)
    screen = sys.stdout.isatty() and not args.plain
    stop_at = time.monotonic() + (args.duration or math.inf)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        for frame in observe(urls, args.interval, forecasts):
            lines = [format_screen(frame, args.interval)] if screen else format_plain(frame)
            print(*lines, sep="\n", end="" if screen else "\n", flush=True)
            if time.monotonic() >= stop_at:
                break
    except KeyboardInterrupt:
        pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if forecasts is not None:
            forecasts.close()
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register the ``watch`` subcommand, handled by :func:`run_command`."""
    from stream_forecaster.cli.main import _Formatter  # not at the top: cli imports this module

    p = sub.add_parser(
        "watch",
        parents=[common],
        help="live console view of running forecasters: throughput, latency, forecasts",
        description="Every --interval, scrape the /metrics of one or more serve processes and "
        "show, summed over them and computed over that interval: forecasts, records and "
        "invalid records per second, end-to-end latency p50/p99 and inference p99 (from "
        "histogram bucket deltas, like Prometheus' histogram_quantile; marked cumulative when "
        "the interval observed nothing), active keys, consumer lag, the model served, and the "
        "latest forecasts on SF_TOPICS__OUTPUT. On a terminal the screen is redrawn in place; "
        "otherwise (logs, pipes) one line per interval. Ctrl-C or SIGTERM stops it (status 0).",
        epilog="example, two instances:\n  stream-forecaster watch --plain "
        "--metrics-url http://a:9464/metrics --metrics-url http://b:9464/metrics",
        formatter_class=_Formatter,
    )
    arg = p.add_argument
    arg(
        "--metrics-url",
        action="append",
        metavar="URL",
        help="a serve process's /metrics; "
        "repeat for several, which are summed (default http://127.0.0.1:<SF_METRICS__PORT>"
        "/metrics); one not answering is shown as down",
    )
    arg(
        "--interval",
        type=positive_float,
        default=1.0,
        metavar="S",
        help="seconds between refreshes; rates and quantiles cover the last interval (default 1)",
    )
    arg(
        "--forecasts",
        type=lambda t: round(positive_float(t)) or 1,
        default=8,
        metavar="N",
        help="how many of the latest forecasts on SF_TOPICS__OUTPUT to show (default 8)",
    )
    arg("--no-forecasts", action="store_true", help="do not read the output topic")
    arg(
        "--duration",
        type=positive_float,
        metavar="S",
        help="stop after S seconds (default: run until Ctrl-C or SIGTERM)",
    )
    arg(
        "--plain",
        action="store_true",
        help="one line per interval even on a terminal (the default when not on one)",
    )
    p.set_defaults(handler=run_command)
