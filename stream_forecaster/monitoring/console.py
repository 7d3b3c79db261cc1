"""The console view of running forecasters (``stream-forecaster watch``).

Every interval it scrapes the ``/metrics`` of one or more ``serve`` processes and shows,
summed over them and computed over that interval: forecasts, records and invalid records
per second, end-to-end latency p50/p99 and inference p99 (from histogram bucket deltas, as
Prometheus' ``histogram_quantile`` does), active keys, consumer lag and the model served;
and the latest forecasts read from the output topic. On a terminal the screen is redrawn
in place; otherwise (logs, pipes) it prints one line per interval.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from stream_forecaster.monitoring.latest_forecasts import LatestForecasts
from stream_forecaster.monitoring.scrape import (
    Quantiles,
    Summary,
    combine,
    increase,
    scrape,
    summarize,
)
from stream_forecaster.settings import Settings
from stream_forecaster.wire.forecasts import Forecast
from stream_forecaster.wire.timestamps import format_timestamp

log = logging.getLogger(__name__)


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


def watch(args: argparse.Namespace, settings: Settings) -> int:
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
