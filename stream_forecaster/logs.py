"""Logging set-up shared by every command: one line per event, UTC timestamps, to stderr."""

from __future__ import annotations

import logging
import sys
import time


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
