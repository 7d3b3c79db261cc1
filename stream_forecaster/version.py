"""The installed version of stream-forecaster (``0.0.0+unknown`` in a source tree that is not
installed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stream-forecaster")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
