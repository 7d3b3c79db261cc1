"""Logging set-up shared by every command: one line per event, UTC timestamps, to stderr."""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

#: kafka-python's messages that report what our own logs already say, or nothing a user
#: can act on, by logger: shown at DEBUG only.
_DEMOTED: Final = {
    # a slow step of its I/O loop on a busy machine (our latency metrics show its effect)
    "kafka.net.selector": ("blocking the event loop",),
    # a topic not created yet: serve and the model follower say so, once, and wait
    "kafka.cluster": ("not found in cluster metadata",),
    # each try to reach a broker that is down: the commands say once that they wait
    "kafka.net.manager": ("Bootstrap", "Connection failed"),
}
#: kafka-python's loggers of single connections: each failed try of each connection is an
#: ERROR there; the commands report the cluster's state in their own words (and metrics).
_CONNECTION_LOGGERS: Final = ("kafka.net.connection", "kafka.net.transport")


class _Demoted(logging.Filter):
    """Drops records whose message holds one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        return not any(fragment in message for fragment in self.fragments)


def _utc(seconds: float | None) -> time.struct_time:
    return time.gmtime(seconds)


def configure_logging(level: str = "INFO") -> None:
    """Send log records at ``level`` and above to stderr as ``time LEVEL logger: message``."""
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = _utc
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python is chatty at INFO (every connection and rebalance step).
    logging.getLogger("kafka").setLevel(max(logging.WARNING, root.level))
    for noisy in ("absl", "tensorflow", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in _CONNECTION_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL if root.level > logging.DEBUG else 0)
    for name, fragments in _DEMOTED.items():
        logger = logging.getLogger(name)
        logger.filters = [f for f in logger.filters if not isinstance(f, _Demoted)]
        if root.level > logging.DEBUG:
            logger.addFilter(_Demoted(fragments))
