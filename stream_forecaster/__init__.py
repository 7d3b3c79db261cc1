"""stream-forecaster: one-step-ahead LSTM forecasts for live sensor feeds on Kafka."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stream-forecaster")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
